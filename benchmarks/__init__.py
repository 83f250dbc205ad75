"""Benchmarks for monitorch-widget (not part of the unit tests). Run: ``python -m benchmarks``."""

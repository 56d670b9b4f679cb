"""Benchmark scripts: each prints figures; nothing here is asserted in tests."""

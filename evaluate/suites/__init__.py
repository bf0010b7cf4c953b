"""Versioned evaluation suites kept as data (``safety-v1.toml``)."""

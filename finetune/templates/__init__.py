"""Versioned export templates, one TOML file per task and version (``<task>-v<N>.toml``)."""

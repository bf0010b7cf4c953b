"""Versioned judge prompts kept as data (``<name>-v<N>.toml``, loaded like labeling's prompts)."""

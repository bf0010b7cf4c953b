"""Canonical records, label vocabularies, the snapshot store, ingestion and curation steps."""

__version__ = "0.1.0"

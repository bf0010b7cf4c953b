"""Ingestion adapters: one module per source, each registered by name."""

from curation.adapters.base import Adapter, Rejected, get_adapter, register, registry

__all__ = ["Adapter", "Rejected", "get_adapter", "register", "registry"]

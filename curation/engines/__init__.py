"""Execution engines for curation steps beyond the single-process default (Ray Data)."""

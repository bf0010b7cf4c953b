"""Labeling tasks (emotion, strategy, traits, empathy), one module each, registered by name."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

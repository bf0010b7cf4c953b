"""Curation steps, one module per kind (normalise, filters, dedup, splits), each registered by name.

Importing this package imports every step module, which registers its steps
(:func:`curation.steps.base.register_step`); ``steps_registry()`` lists them.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

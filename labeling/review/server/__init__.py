"""A local Argilla server for ``workbench review serve``.

``manager`` runs in the workbench's environment; ``launch.py`` and ``argilla_engine.py``
run inside argilla-server's own virtualenv and import nothing of the workbench.
"""

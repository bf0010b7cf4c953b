"""Human review in Argilla: settings per task, push a snapshot's units, pull the answers into a new snapshot.

:mod:`labeling.review.settings` declares what annotators see; :mod:`labeling.review.sync`
pushes and pulls; :mod:`labeling.review.server` runs a local argilla-server. Nothing here
imports the argilla SDK until a push or pull needs it.
"""

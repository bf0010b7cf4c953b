"""The workbench dashboard: ``workbench dashboard`` runs ``streamlit run`` on this file.

Reads the store named by ``WORKBENCH_STORE`` (and the runs folder named by
``WORKBENCH_RUNS``); each page is a script under ``views/`` that calls
:mod:`ui.dashboard.data` only. The folder is not called ``pages/``: Streamlit would
also serve such a folder as an old-style multipage app, so that a first visit to
``/review`` ran the page without this file. And Streamlit puts a page's folder on
``sys.path``, so no page file may be named like a package of ours (hence
``curation_report.py``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="workbench", page_icon=":material/dataset:", layout="wide")

navigation = st.navigation(
    [
        st.Page(PAGES / "snapshots.py", title="Snapshots", icon=":material/account_tree:", default=True),
        st.Page(PAGES / "distributions.py", title="Distributions", icon=":material/bar_chart:"),
        st.Page(PAGES / "disagreements.py", title="Disagreements", icon=":material/compare_arrows:"),
        st.Page(PAGES / "review.py", title="Review", icon=":material/rate_review:"),
        st.Page(PAGES / "curation_report.py", title="Curation", icon=":material/filter_alt:", url_path="curation"),
        st.Page(PAGES / "results.py", title="Results", icon=":material/monitoring:"),
    ]
)
navigation.run()

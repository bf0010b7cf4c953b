"""The Streamlit dashboard (`workbench dashboard`): app.py, the pages in views/, and their data layer."""

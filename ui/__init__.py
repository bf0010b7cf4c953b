"""The `workbench` CLI (Typer) and, later, the Streamlit dashboard: thin layers over the library."""

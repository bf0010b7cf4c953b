"""The dashboard's pages: Streamlit scripts run by app.py's navigation (a package only so that wheels ship them)."""

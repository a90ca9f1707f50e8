"""Streamlit-side helpers shared by the entrypoint and the pages: cached engine calls and the sidebar."""

"""Entrypoint: the frame around every page (sidebar, navigation). Run: streamlit run dashboard.py"""

import streamlit as st

from ui import sidebar

sidebar.configure_page()

PAGES = [
    st.Page("pages/overview.py", title="Model and predictions", icon=":material/image_search:", default=True),
    st.Page("pages/layer_grid.py", title="Layer-by-layer Grad-CAM", icon=":material/grid_view:"),
    st.Page("pages/compare.py", title="Compare methods", icon=":material/compare:"),
    st.Page("pages/dataset.py", title="Your dataset", icon=":material/folder_open:"),
]

navigation = st.navigation(PAGES)
sidebar.render()
navigation.run()

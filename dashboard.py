"""Entrypoint: the frame around every page (sidebar, navigation). Run: streamlit run dashboard.py"""

import streamlit as st

from ui import share, sidebar

sidebar.configure_page()

PAGES = [
    st.Page("pages/overview.py", title="Model and predictions", icon=":material/image_search:", default=True),
    st.Page("pages/layer_grid.py", title="Layer-by-layer Grad-CAM", icon=":material/grid_view:"),
    st.Page("pages/compare.py", title="Compare methods", icon=":material/compare:"),
    st.Page("pages/dataset.py", title="Your dataset", icon=":material/folder_open:"),
]

# Each page's widget keys start with its prefix; those and the sidebar's make up a shareable link.
URL_PREFIXES = {"overview": "overview_", "layer_grid": "grid_", "compare": "cmp_", "dataset": "ds_"}

navigation = st.navigation(PAGES)
sidebar.render()
try:
    navigation.run()
finally:  # also when a page stops early (st.stop): its link must still reflect what is shown
    share.publish(URL_PREFIXES.get(navigation.url_path, "overview_"))

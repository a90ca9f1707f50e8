"""Entrypoint: the frame around every page (sidebar, navigation). Run: streamlit run dashboard.py"""

import streamlit as st

from ui import auth, share, sidebar

sidebar.configure_page()

PAGES = [
    st.Page("pages/overview.py", title="Model and predictions", icon=":material/image_search:", default=True),
    st.Page("pages/layer_grid.py", title="Layer-by-layer Grad-CAM", icon=":material/grid_view:"),
    st.Page("pages/compare.py", title="Compare methods", icon=":material/compare:"),
    st.Page("pages/dataset.py", title="Your dataset", icon=":material/folder_open:"),
]

# Each page's widget keys start with its prefix; those and the sidebar's make up a shareable link.
URL_PREFIXES = {"overview": "overview_", "layer_grid": "grid_", "compare": "cmp_", "dataset": "ds_"}

# Before anything reads the URL or touches a model: a visitor who may not see the app gets the
# sign-in screen on every URL, and the run stops there. Without [auth] in the secrets it does nothing.
auth.gate(page.url_path for page in PAGES)

navigation = st.navigation(PAGES)
sidebar.render()
try:
    navigation.run()
finally:  # also when a page stops early (st.stop): its link must still reflect what is shown
    share.publish(URL_PREFIXES.get(navigation.url_path, "overview_"))

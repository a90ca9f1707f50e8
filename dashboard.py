"""Entrypoint: the frame around every page (sidebar, navigation). Run: streamlit run dashboard.py"""

import streamlit as st

from ui import sidebar

st.set_page_config(page_title="CNN Attribution Dashboard", page_icon=":material/visibility:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Model and predictions", icon=":material/image_search:", default=True),
]

navigation = st.navigation(PAGES)
sidebar.render()
navigation.run()

"""Entrypoint: the frame around every page (sidebar, navigation). Run: streamlit run dashboard.py"""

from typing import NamedTuple

import streamlit as st

from ui import auth, frame

frame.configure_page()


class View(NamedTuple):
    """One page: its script in views/, its title and icon in the navigation, and the prefix of its widget keys
    (those and the sidebar's make up a shareable link). Its address is the script's name."""

    script: str
    title: str
    icon: str
    prefix: str


VIEWS = [
    View("views/overview.py", "Model and predictions", ":material/image_search:", "overview_"),
    View("views/layer_grid.py", "Layer-by-layer Grad-CAM", ":material/grid_view:", "grid_"),
    View("views/compare.py", "Compare methods", ":material/compare:", "cmp_"),
    View("views/dataset.py", "Your dataset", ":material/folder_open:", "ds_"),
    View("views/learned.py", "What the model learned", ":material/psychology:", "learned_"),
    View("views/trust.py", "Which method to trust", ":material/verified:", "trust_"),
]
PAGES = [st.Page(view.script, title=view.title, icon=view.icon, default=view is VIEWS[0]) for view in VIEWS]
URL_PREFIXES = {page.url_path: view.prefix for page, view in zip(PAGES, VIEWS)}

# Before anything reads the URL or touches a model: a visitor who may not see the app gets the
# sign-in screen on every URL, and the run stops there. Without [auth] in the secrets it does nothing.
auth.gate(page.url_path for page in PAGES)

navigation = st.navigation(PAGES)
auth.return_after_sign_in(PAGES, navigation)  # back from sign-in: to the link the visitor opened, query and all
# On a fresh server the engine (TensorFlow) is still loading: the title and the sidebar's
# outline are drawn first, so the visitor sees the app while it does.
with frame.outline_until_ready(navigation.title):
    from explainers.plugins import load_environment_plugins

    # ATTRIBUTION_DASHBOARD_PLUGINS, before any page lists methods or metrics: imported once per server, each
    # failure one line in the server's log.
    load_environment_plugins()
    from ui import budget, share, sidebar

    sidebar.render()
page_prefix = URL_PREFIXES.get(navigation.url_path, "overview_")
# Before the page as well as after it: once a page calls st.stop, Streamlit sends nothing more in
# that run (a `finally` runs, but its link update is dropped), so the link must already be out.
# This page's view as the visitor left it, back after a visit to another page; copied as the run starts, since a
# click in the browser stops the run under way before its end.
share.keep(page_prefix)
share.publish(page_prefix)
link_slot = st.sidebar.empty()
share.offer_link(link_slot, page_prefix, navigation.url_path)
# A page's engine work ends between batches once the visitor has gone; its view is copied again when its run ends.
with budget.stopped_with_the_run(), share.remembered(page_prefix):
    navigation.run()
share.publish(page_prefix)  # values the page set itself (a default it chose, a clicked cell)
share.offer_link(link_slot, page_prefix, navigation.url_path)

"""The "What the model learned" page: nothing heavy until asked, a stated cost, and pictures the model recognises."""

import pytest
from streamlit.testing.v1 import AppTest

from conftest import PROJECT_ROOT


@pytest.fixture
def page():
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.session_state["model_spec"] = "digits_cnn"
    at.run()
    at.switch_page("pages/learned.py").run()
    assert not at.exception, at.exception
    return at


def test_opens_on_a_stated_cost_and_computes_on_the_button(page):
    button = next(b for b in page.button if b.key == "learned_run")
    assert "about" in button.label and " s)" in button.label
    sidebar_images = len(page.image)  # the sidebar's photo: nothing optimised before it is asked
    page.slider(key="learned_steps").set_value(30)
    page.run()
    next(b for b in page.button if b.key == "learned_run").click().run()
    assert not page.exception, page.exception
    captions = [c.value for c in page.caption]
    assert any("visualisations as the class they were made for" in c for c in captions)
    assert len(page.image) > sidebar_images
    assert any(e.label.startswith("How ") and "(animation)" in e.label for e in page.expander)
    page.run()  # a rerun shows the same result without a button
    assert not [b for b in page.button if b.key == "learned_run"]


def test_a_link_carries_the_settings(page):
    page.slider(key="learned_steps").set_value(50)
    page.run()
    assert page.query_params.get("learned_steps") == "50"


def test_channels_default_to_the_most_active_on_the_first_image(page):
    page.radio(key="learned_target").set_value("the channels")
    page.selectbox(key="learned_layer").set_value("conv2")
    page.slider(key="learned_channel_count").set_value(3)
    page.slider(key="learned_steps").set_value(10)
    page.run()
    assert any("most active on cat_chelsea" in c.value for c in page.caption)
    next(b for b in page.button if b.key == "learned_run").click().run()
    assert not page.exception, page.exception
    captions = [img.caption for image in page.image for img in image.proto.imgs if img.caption]
    assert sum("conv2 channel" in c and "The model sees" in c for c in captions) == 3  # the visualisations
    assert sum(c.startswith("channel ") and "on cat_chelsea" in c for c in captions) == 3  # beside their activation

"""A map of a class the model all but rules out says so, on the layer grid as on the comparison page."""

import numpy as np
from streamlit.testing.v1 import AppTest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.attribution import LOW_PROBABILITY, is_low_probability, low_probability_note


def test_the_note_names_the_image_class_and_probability():
    note = low_probability_note("coffee", "Egyptian Mau", 3e-6)
    assert note.startswith("coffee is explained as Egyptian Mau, which the model gives p < 0.001, below 0.01")
    assert is_low_probability(LOW_PROBABILITY / 2) and not is_low_probability(LOW_PROBABILITY)


def test_layer_grid_marks_every_cell_of_a_least_likely_class_and_no_cell_of_a_top_class():
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.query_params.update({"grid_class_mode": "Least likely", "grid_layers": ["block_9_expand", "head_conv"]})
    at.switch_page("views/layer_grid.py")
    at.run()
    assert not at.exception, at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "cat_chelsea is explained as" in warning and "coffee is explained as" in warning
    mark = f"class below p = {LOW_PROBABILITY:g}"
    images = " ".join(str(e.proto) for e in at.main if type(e).__name__ == "Image")
    assert images.count(mark) == 2 * 2  # each image's two layer cells (the photos' captions say "below 0.01")
    assert images.count(f"below {LOW_PROBABILITY:g})") == 2

    at.radio(key="grid_class_mode").set_value("Top predicted").run()
    assert not at.exception, at.exception
    model = ex.load_model()
    probabilities = model.predict([ex.decode_image(ex.sample_images()[n]) for n in ("cat_chelsea", "coffee")])
    top_two = -np.sort(-probabilities, axis=1)[:, :2]  # the page's default bands: top-1 and top-2
    images = " ".join(str(e.proto) for e in at.main if type(e).__name__ == "Image")
    assert images.count(mark) == 2 * int((top_two < LOW_PROBABILITY).sum())  # two layers per marked row
    assert bool(at.warning) == bool((top_two < LOW_PROBABILITY).any())

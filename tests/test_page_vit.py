"""A Vision Transformer through the pages and the dataset evaluation: its blocks are offered as layers, the attention
methods run, and nothing on the way raises."""

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from vit_models import evidence_pictures, trained_vit

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.settings import DATA_ROOTS_ENV, TRUST_MODEL_CODE_ENV


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    trained_vit().save(folder / "vit.keras")
    return folder / "vit.keras"


def test_a_vit_on_the_pages_offers_its_blocks_and_runs_the_attention_methods(monkeypatch, tmp_path_factory, vit_file):
    monkeypatch.delenv(TRUST_MODEL_CODE_ENV, raising=False)
    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path_factory.getbasetemp()))
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=240)
    at.run()
    at.sidebar.selectbox(key="model_spec").set_value("own").run()
    at.sidebar.text_input(key="own_model_path").set_value(str(vit_file)).run()
    assert not at.exception and not at.sidebar.error, (at.exception, [e.value for e in at.sidebar.error])
    layer = at.selectbox(key="overview_layer")
    assert layer.value == "block2_norm1"
    assert "block 2 (tokens → 4×4) · block2_norm1" in layer.options
    at.switch_page("views/layer_grid.py").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="grid_layers").value == ["patch_embedding", "block1_norm1", "block2_norm1"]
    at.switch_page("views/compare.py").run()
    at.multiselect(key="cmp_methods").set_value(["attention_rollout", "transformer_attribution", "gradcam"]).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    headers = " ".join(m.value for m in at.markdown)
    for label in ("Attention rollout", "Transformer attribution", "Grad-CAM"):
        assert f"**{label}**" in headers


def test_a_vits_dataset_evaluation_stores_grad_cams_on_the_patch_grid(tmp_path, vit_file):
    pictures = evidence_pictures(12, seed=11)
    for i, (pixels, label) in enumerate(zip(pictures.pixels, pictures.labels, strict=True)):
        folder = tmp_path / f"class {label}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    model = ex.load_model(str(vit_file))
    evaluation = ex.datasets.evaluate(model, tmp_path)
    assert evaluation.cam_layer == "block2_norm1"
    assert len(evaluation.files) == 12 and (evaluation.predicted == evaluation.true).mean() >= 0.9
    assert evaluation.cams.shape[0] == 12 and np.isfinite(evaluation.cams).all() and evaluation.cams.max() > 0

"""The trust page in a real server and Chromium: results on the digits demo and on an uploaded ZIP with masks.

Screenshots go to ``artifacts/screenshots/trust_*.png``: the whole page, then each results tab.
"""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

import explainers as ex
from conftest import PROJECT_ROOT, require_chromium
from explainers.datasets.sources import list_images
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.trust.evaluate import evaluate_trust
from explainers.trust.masks import masks_from_strokes
from explainers.trust.scoring import trust_request
from explainers.trust.summary import summarise
from tools.screenshot import wait_until_idle

SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"
METHODS = ["gradcam", "saliency", "guided_backprop"]
METRICS = ["deletion", "insertion", "sparseness", "pointing_game", "relevance_mass"]
OFF = ["road_morf", "road_lerf", "model_randomisation", "max_sensitivity"]
LINK = "&".join([*(f"trust_methods={m}" for m in METHODS), "trust_per_class=3", *(f"trust_use_{m}=false" for m in OFF)])
TABS = ["Per class", "Ranking stability and agreement", "Cards", "Where methods disagree"]

require_chromium()


VIEWPORT = {"width": 1500, "height": 2400}


def _results(page) -> None:
    """Until the evaluation is done and its table drawn."""
    page.get_by_text("Methods × metrics").wait_for(timeout=600_000)
    wait_until_idle(page, 600_000)


def _screenshots(page, name: str) -> None:
    """The page, then each results tab, each checked for a Python exception and for charts that did not draw."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"trust_{name}.png"))
    for index, label in enumerate(TABS):
        tab = page.get_by_role("tab", name=label)
        tab.click()
        page.wait_for_timeout(1500)
        tab.scroll_into_view_if_needed()
        top = tab.bounding_box()["y"]
        page.screenshot(path=str(SCREENSHOTS / f"trust_{name}_{index + 1}.png"),
                        clip={"x": 0, "y": max(0, top - 60), "width": 1500, "height": 1400})
        for chart in page.locator("[data-testid='stVegaLiteChart']").all():
            if chart.is_visible():  # a chart Vega could not draw is left with no size
                box = chart.bounding_box()
                assert box["width"] > 100 and box["height"] > 100, (label, box)
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


def test_the_digits_demo_shows_its_results_with_true_numbers(server, browser):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server}/trust?{LINK}")
    _results(page)
    _screenshots(page, "digits")
    assert not errors  # Vega refuses a bad spec in the browser's console, not in Python

    model = ex.load_model(ex.DIGITS_MODEL)
    request = trust_request(model, METHODS, METRICS, has_masks=True)
    result = evaluate_trust(model, list_images(DIGITS_TEST_FOLDER, model), request, per_class=3, seed=0,
                            masks=masks_from_strokes())
    summary = summarise(result.rows, METHODS, METRICS, seed=0)
    page.get_by_role("tab", name="Cards").click()
    cards = page.locator("[data-testid='stMain']").inner_text()
    for method in METHODS:
        estimate = summary.overall[method]["pointing_game"]
        assert f"{estimate.mean:.3f} [{estimate.low:.3f}, {estimate.high:.3f}], higher is better" in cards

    # The downloads: trust.json holds the engine's numbers, and the report is one HTML file.
    with page.expect_download() as download:
        page.get_by_role("button", name="trust.json").click()
    answer = json.loads(Path(download.value.path()).read_text())
    for method in METHODS:
        for metric in METRICS:
            estimate = summary.overall[method][metric]
            assert answer["methods"][method][metric] == {"mean": round(estimate.mean, 6), "low": round(estimate.low, 6),
                                                         "high": round(estimate.high, 6), "images": estimate.images}
    assert answer["ranking"] == summary.ranking and answer["sample_per_class"] == 3
    with page.expect_download() as download:
        page.get_by_role("button", name="Report (HTML)").click()
    assert Path(download.value.path()).read_text().lstrip().lower().startswith("<!doctype html")
    page.close()


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_uploaded_zip_with_masks_is_scored_and_its_bad_mask_named(server, browser, tmp_path):
    archive = tmp_path / "digits.zip"
    bad = sorted((DIGITS_TEST_FOLDER / "8").glob("*.png"))[0].name  # its mask has the wrong size
    with zipfile.ZipFile(archive, "w") as packed:
        for digit in ("1", "4", "8"):
            for path in sorted((DIGITS_TEST_FOLDER / digit).glob("*.png"))[:3]:  # all sampled, 3 per class
                packed.write(path, f"digits/{digit}/{path.name}")
                strokes = np.asarray(Image.open(path).convert("L")) > 127
                mask = np.full((14, 14), 255, np.uint8) if path.name == bad else np.where(strokes, 255, 0)
                packed.writestr(f"digits/masks/{digit}/{path.name}", _png(mask.astype(np.uint8)))
        packed.writestr("digits/masks/1/extra.png", _png(np.zeros((28, 28), np.uint8)))  # a mask with no image: unused
    page = browser.new_page()
    page.goto(f"{server}/trust?trust_source=A+ZIP+upload&model_spec={ex.DIGITS_MODEL}&{LINK}")
    wait_until_idle(page)
    page.locator("[data-testid='stMain'] input[type='file']").first.set_input_files(str(archive))
    _results(page)
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "No localisation values for 1 image, scored by the other metrics; the first: The mask" in main
    assert f"'8/{bad}' is 14x14 pixels but the image is 28x28" in main
    _screenshots(page, "zip")
    page.close()

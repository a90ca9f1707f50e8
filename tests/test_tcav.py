"""TCAV (``explainers.concepts.tcav``) on a model trained here on pictures whose evidence we placed: class 1 carries a
bright square in the top-left corner (the mark), class 0 is plain noise. A concept folder of marks must come out
significant with a high score for class 1; a concept folder of plain noise, a fixed set drawn like the random images,
must not, which is the test's reason to exist (a fixed set's own sampling noise pulls every run's CAV the same way).
Directional derivatives are checked against a plain GradientTape, the span trick against a fit on the flattened
activations, the gradient at a layer before pooling and a dense head against its analytic value, Holm's correction
against a loop, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from explainers.cli import main
from explainers.concepts import tcav as T
from explainers.models.loading import load_model

SIZE = 16
MARK = (slice(1, 5), slice(1, 5))  # rows, columns of the bright square
LAST_CONV_SIZE = SIZE // 2  # conv2 runs after one 2 x 2 pooling


def noise(count: int, rng: np.random.Generator) -> np.ndarray:
    """Plain noise pictures, dark enough that the mark stands out."""
    return rng.integers(0, 100, (count, SIZE, SIZE, 3), dtype=np.uint8)


def marked(count: int, rng: np.random.Generator) -> np.ndarray:
    pictures = noise(count, rng)
    pictures[:, MARK[0], MARK[1], :] = 255
    return pictures


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(the Keras network, the same network loaded from its .keras file, the file): trained in about a second, seeded."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = np.concatenate([noise(200, rng), marked(200, rng)]).astype(np.float32)
    y = np.r_[np.zeros(200), np.ones(200)]
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(h)
    network = keras.Model(inputs, outputs)
    network.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    network.fit(x, y, epochs=8, batch_size=32, verbose=0)
    check = np.concatenate([noise(50, rng), marked(50, rng)]).astype(np.float32)
    assert network.evaluate(check, np.r_[np.zeros(50), np.ones(50)], verbose=0)[1] == 1.0  # it learnt the mark
    path = tmp_path_factory.mktemp("tcav_model") / "marked.keras"
    network.save(path)
    return network, load_model(str(path)), path


def image_set(model, name: str, pixels: np.ndarray) -> T.ImageSet:
    return T.image_set(model, name, list(pixels), [f"{name}_{i}.png" for i in range(len(pixels))])


def planted_plan(model, rng: np.random.Generator, layer: str | None = None, concepts=("mark", "noise"),
                 **settings) -> T.TcavPlan:
    pictures = {"mark": lambda: marked(50, rng), "noise": lambda: noise(50, rng)}
    sets = [image_set(model, name, pictures[name]()) for name in concepts]
    classes = [T.ClassImages(0, "class 0", image_set(model, "clean", noise(50, rng))),
               T.ClassImages(1, "class 1", image_set(model, "marked", marked(50, rng)))]
    return T.plan_tcav(model, layer, sets, image_set(model, "random", noise(200, rng)), classes,
                       T.tcav_settings(**settings))


@pytest.fixture(scope="module")
def planted(trained):
    _, model, _ = trained
    plan = planted_plan(model, np.random.default_rng(1))
    return plan, T.run_tcav(model, plan)


def test_the_planted_mark_is_significant_and_a_folder_of_plain_noise_is_not(planted):
    plan, result = planted
    assert result.layer == "conv2"  # the model's own CAM layer by default
    assert plan.tests == 4 and result.pseudo_concepts == 80  # the fewest with 1 / 81 below 0.05 / 4
    mark = result.score("class 1", "mark")
    assert mark.significant and mark.score >= 0.9 and mark.derivative > 0
    assert mark.derivative > mark.null_derivative_mean + 3 * mark.null_derivative_spread
    # The mark argues against the clean class as plainly: a score near 0, just as significant (two-sided).
    against = result.score("class 0", "mark")
    assert against.significant and against.score <= 0.1 and against.derivative < 0
    # The failure TCAV is known for: a fixed set of plain noise, no different from the random images. Its score may
    # sit anywhere (every run's CAV leans the same way), but it is no more extreme than the pseudo-concepts'.
    for class_name in ("class 0", "class 1"):
        plain = result.score(class_name, "noise")
        assert not plain.significant and plain.p_adjusted > plan.settings.alpha
        assert plain.p_value > 0.05
    cavs = {cav.name: cav for cav in result.concepts}
    assert cavs["mark"].cav_accuracy >= 0.95 and cavs["mark"].separable
    assert cavs["noise"].cav_accuracy < T.MIN_CAV_ACCURACY and not cavs["noise"].separable


def test_holm_s_correction_is_applied_over_concepts_times_classes(planted):
    plan, result = planted
    p_values = [item.p_value for item in result.scores]
    assert [item.p_adjusted for item in result.scores] == pytest.approx(list(T.holm(p_values)))
    # The mark beats every pseudo-concept: raw p = 1 / 81, corrected = 4 / 81, just under 0.05.
    mark = result.score("class 1", "mark")
    assert mark.p_value == pytest.approx(1 / 81) and mark.p_adjusted == pytest.approx(4 / 81)
    for item in result.scores:
        assert item.significant == (item.p_adjusted <= plan.settings.alpha and item.separable)


def test_holm_matches_a_plain_loop_and_rejects_a_p_just_under_alpha_among_several():
    p_values = [0.04, 0.3, 0.5, 0.9]
    assert list(T.holm(p_values)) == pytest.approx([0.16, 0.9, 1.0, 1.0])  # 0.04 alone would pass at 0.05
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = rng.uniform(0, 0.2, rng.integers(1, 9))
        order = np.argsort(p)
        expected = np.empty_like(p)
        running = 0.0
        for rank, index in enumerate(order):
            running = max(running, min(1.0, (len(p) - rank) * p[index]))
            expected[index] = running
        assert T.holm(p) == pytest.approx(expected)


def test_enough_pseudo_concepts_for_the_corrected_threshold_and_too_few_are_refused(trained):
    for tests, alpha in ((4, 0.05), (50, 0.05), (20, 0.01), (3, 0.05)):
        needed = T.needed_pseudo_concepts(tests, alpha)
        assert 1 / (1 + needed) < alpha / tests <= 1 / needed
    assert T.needed_pseudo_concepts(50, 0.05) == 1000
    _, model, _ = trained
    with pytest.raises(T.InputError, match="give at least 80"):
        planted_plan(model, np.random.default_rng(0), pseudo_concepts=79)


def test_the_permutation_p_value_counts_pseudo_concepts_at_least_as_far():
    # The mean of all five is 1, so the distances are 4, 1, 1, 2, 0: no pseudo-concept is 4 away, p = (1 + 0) / 5.
    assert T.permutation_p_value(np.array([5.0, 0.0, 0.0, -1.0, 1.0])) == pytest.approx(1 / 5)
    assert T.permutation_p_value(np.array([0.0, 2.0, -2.0, 1.0, -1.0])) == pytest.approx(5 / 5)
    assert T.permutation_p_value(np.array([-3.0, 1.0, 0.5, 0.5, 1.0])) == pytest.approx(1 / 5)  # two-sided


def test_the_gradient_before_pooling_and_a_dense_head_is_the_same_for_every_image(trained):
    """Why the test's statistic is the mean directional derivative, not the score: here every image has the same
    gradient, the head's weights over the pooled positions, so any CAV scores 0 or 1."""
    network, model, _ = trained
    pixels = noise(6, np.random.default_rng(5))
    gradients = T.logit_gradients(model, pixels, 1, "conv2", batch_size=4)
    kernel = np.asarray(network.get_layer("head").kernel)
    expected = np.broadcast_to(kernel[:, 1] / LAST_CONV_SIZE**2, gradients.shape)
    np.testing.assert_allclose(gradients, expected, rtol=1e-5, atol=1e-8)


def test_directional_derivatives_equal_a_plain_gradient_tape(trained):
    network, model, _ = trained
    rng = np.random.default_rng(6)
    pixels = np.concatenate([noise(5, rng), marked(5, rng)])
    activations = keras.Model(network.inputs, network.get_layer("conv1").output)
    cav = rng.normal(size=SIZE * SIZE * 8)
    cav /= np.linalg.norm(cav)
    for class_index in (0, 1):
        x = tf.constant(model.to_input(pixels))
        with tf.GradientTape() as tape:
            layer = activations(x)
            tape.watch(layer)
            h = network.get_layer("conv2")(network.get_layer("pool")(layer))
            logits = network.get_layer("gap")(h) @ network.get_layer("head").kernel + network.get_layer("head").bias
            logit = tf.reduce_sum(logits[:, class_index])
        by_tape = tape.gradient(logit, layer).numpy().reshape(len(pixels), -1) @ cav
        found = T.directional_derivatives(model, pixels, class_index, "conv1", cav, batch_size=4)
        np.testing.assert_allclose(found, by_tape, rtol=1e-4, atol=1e-6)
        assert np.std(by_tape) > 0  # at conv1 the images' gradients differ: a real check, not a constant


def test_fitting_in_the_span_gives_the_cav_of_a_fit_on_the_flattened_activations(trained):
    _, model, _ = trained
    rng = np.random.default_rng(7)
    acts = T.layer_activations(model, np.concatenate([marked(20, rng), noise(40, rng)]), "conv1", 32)
    basis = T.span_basis(acts)
    labels = np.r_[np.ones(20, bool), np.zeros(40, bool)]
    in_span = T.fit_cav(basis.coordinates, labels, 0)
    flat = T.fit_cav(basis.activations.astype(np.float64), labels, 0)
    direction = basis.full(in_span.direction[None])[0]
    assert np.dot(direction, flat.direction) > 0.999
    assert in_span.offset == pytest.approx(flat.offset, rel=1e-3, abs=1e-4)
    gradients = T.logit_gradients(model, noise(4, rng), 1, "conv1", 4).reshape(4, -1)
    np.testing.assert_allclose(basis.project(gradients) @ in_span.direction, gradients @ direction, rtol=1e-3,
                               atol=1e-6)


def test_a_concept_drawn_like_the_random_images_is_not_significant_across_seeds(trained):
    """A fresh fixed set of plain noise per seed, tested on both classes: at the corrected level at most one seed in
    twenty may call it significant (the family-wise error rate is 5%), and its p-values are not piled near 0."""
    _, model, _ = trained
    significant, p_values = 0, []
    for seed in range(20):
        plan = planted_plan(model, np.random.default_rng(100 + seed), concepts=("noise",), runs=4, seed=seed)
        result = T.run_tcav(model, plan)
        significant += any(item.p_adjusted <= plan.settings.alpha for item in result.scores)
        p_values += [item.p_value for item in result.scores]
    assert significant <= 1
    assert np.mean(np.asarray(p_values) <= 0.05) <= 0.15 and np.median(p_values) > 0.25


def test_the_random_pool_drawn_from_the_dataset_never_holds_an_image_being_scored():
    true = np.repeat([0, 1, 2], 30)
    draw = T.draw_from_dataset(true, [0, 2], class_images=10, random_images=1000, seed=4, random_from_dataset=True)
    assert {c: len(rows) for c, rows in draw.class_rows.items()} == {0: 10, 2: 10}
    assert all((true[rows] == c).all() for c, rows in draw.class_rows.items())
    scored = np.concatenate(list(draw.class_rows.values()))
    assert np.intersect1d(scored, draw.random_rows).size == 0 and len(draw.random_rows) == 70
    assert set(true[draw.random_rows]) == {0, 1, 2}  # every class, the ones under test too


def write_pngs(folder: Path, pictures: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, picture in enumerate(pictures):
        Image.fromarray(picture).save(folder / f"{index:03d}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    rng = np.random.default_rng(8)
    root = tmp_path_factory.mktemp("tcav_folders")
    write_pngs(root / "data" / "0", noise(40, rng))
    write_pngs(root / "data" / "1", marked(40, rng))
    # A dataset where the mark is rare, as a shortcut is in real data: a random pool drawn from it is mostly clean.
    write_pngs(root / "mostly_clean" / "0", noise(120, rng))
    write_pngs(root / "mostly_clean" / "1", marked(30, rng))
    write_pngs(root / "concepts" / "mark", marked(30, rng))
    write_pngs(root / "concepts" / "noise", noise(30, rng))
    write_pngs(root / "random", noise(60, rng))
    write_pngs(root / "few_random", noise(5, rng))
    write_pngs(root / "one", noise(1, rng))
    (root / "empty").mkdir()
    return root


def concepts_command(trained, folders: Path, out: Path, *extra: str, random: bool = True) -> list[str]:
    _, _, model_file = trained
    data = folders / ("data" if random else "mostly_clean")
    args = ["concepts", "--model", str(model_file), "--data", str(data),
            "--concept", f"mark={folders / 'concepts' / 'mark'}", "--concept", f"noise={folders / 'concepts' / 'noise'}",
            "--out", str(out), "--runs", "4", "--concept-images", "20", "--class-images", "20"]
    return args + (["--random", str(folders / "random")] if random else []) + list(extra)


@pytest.mark.parametrize("random", [True, False], ids=["random folder", "random from the dataset"])
def test_the_command_writes_concepts_json_and_the_chart(trained, folders, tmp_path, capsys, random):
    out = tmp_path / "out"
    assert main(concepts_command(trained, folders, out, random=random)) == 0
    captured = capsys.readouterr()
    assert "estimate:" in captured.err and captured.err.index("estimate:") < captured.err.index("tested in")
    written = json.loads((out / T.CONCEPTS_FILE).read_text())
    assert written["layer"] == "conv2" and set(written["scores"]) == {"class 0", "class 1"}
    mark = written["scores"]["class 1"]["mark"]
    assert {"score", "p_value", "significant", "null_score_low", "null_score_high", "null_score_mean"} <= set(mark)
    assert mark["significant"] is True and mark["score"] >= 0.9
    assert written["scores"]["class 1"]["noise"]["significant"] is False
    assert written["scores"]["class 0"]["noise"]["significant"] is False
    assert written["test"]["correction"] == "holm" and written["test"]["pseudo_concepts"] == 80
    # From the dataset: every image not being scored, 100 clean and 10 marked.
    assert written["random"] == {"source": "folder" if random else "dataset", "images": 60 if random else 110}
    assert written["concepts"]["mark"]["images"] == 20
    with Image.open(out / "concepts.png") as chart:
        assert chart.format == "PNG" and chart.width > 300
    verdicts = {tuple(line.split()[:3]): line.split("  ")[-1].strip() for line in captured.out.splitlines()[1:]}
    assert verdicts[("class", "1", "mark")] == "significant"
    assert verdicts[("class", "1", "noise")] in ("not significant", "no CAV")  # a CAV that cannot separate, said


@pytest.mark.parametrize(("change", "says"), [
    (lambda a, f: a.__setitem__(a.index("--concept") + 1, "mark"), "give NAME=DIR"),
    (lambda a, f: a.__setitem__(a.index("--concept") + 1, f"mark={f / 'empty'}"), "has no image"),
    (lambda a, f: a.__setitem__(a.index("--concept") + 1, f"mark={f / 'one'}"), "has only 1 image"),
    (lambda a, f: a.__setitem__(a.index("--concept") + 1, f"mark={f / 'nowhere'}"), "is not a folder"),
    (lambda a, f: a.extend(["--layer", "head"]), "'head' is not a layer of marked.keras with a spatial output"),
    (lambda a, f: a.extend(["--layer", "nowhere"]), "'nowhere' is not a layer of"),
    (lambda a, f: a.__setitem__(a.index("--random") + 1, str(f / "few_random")), "fewer than the 40 needed"),
    (lambda a, f: a.extend(["--runs", "0"]), "runs of the concept test"),
    (lambda a, f: a.extend(["--pseudo-concepts", "20"]), "give at least 80"),
    (lambda a, f: a.extend(["--classes", "zebra"]), "neither a class name"),
    (lambda a, f: a.__setitem__(a.index("--concept") + 3, f"mark={f / 'concepts' / 'noise'}"),
     "Two concepts are called 'mark'"),
], ids=["no equals sign", "empty folder", "one image", "no folder", "a dense layer", "no such layer",
        "too few random images", "runs out of range", "too few pseudo-concepts", "unknown class", "one name twice"])
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(trained, folders, tmp_path, capsys, change, says):
    out = tmp_path / "out"
    args = concepts_command(trained, folders, out)
    change(args, folders)
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and says in error and "Traceback" not in error
    assert error.count(". ") == 0 and error.endswith(".")
    assert not out.exists()


DEMO = Path(__file__).resolve().parent.parent / "assets" / "shortcut"


def test_on_the_shortcut_demo_the_mark_raises_the_7_and_every_verdict_matches_painting_the_concept_on():
    """Needs the bundled demo (assets/shortcut/, built by tools/build_shortcut_demo.py). The mark must be significant
    with a high score for the shortcut class. The stripes are no neutral control for this model: painted on the test
    digits they lower the 1s' logit by about 6 and raise the 8s' by about 4, so the test is right to find them; what
    they must not do is come out raising the 7. Every significant verdict must agree in sign with what painting the
    concept on clean test digits does to the class's logit (an intervention, computed here independently)."""
    from tools.build_shortcut_demo import paint_mark, paint_stripes

    manifest = json.loads((DEMO / "manifest.json").read_text())
    shortcut = manifest["shortcut_class"]
    model = load_model(str(DEMO / "shortcut_cnn.keras"))
    settings = T.tcav_settings()  # the defaults: 10 runs, 50 concept images, 100 images per class
    concepts = [T.concept_from_folder(model, name, DEMO / "concepts" / name, settings)[0] for name in ("mark", "stripes")]
    random, _ = T.random_from_folder(model, DEMO / "random", settings)
    classes = [shortcut, "1", "8"]
    found = T.dataset_images(model, DEMO / "test", classes, settings, random_from_dataset=False)
    plan = T.plan_tcav(model, None, concepts, random, found.classes, settings)
    result = T.run_tcav(model, plan)
    name_of = {index: model.class_names[index] for index in T.resolve_classes(model, classes)}
    mark = result.score(name_of[int(shortcut)], "mark")
    assert mark.significant and mark.score >= 0.9
    stripes = result.score(name_of[int(shortcut)], "stripes")
    assert not (stripes.significant and stripes.score > 0.5)

    marked_files = set(manifest["marked_test_files"])
    checked = []
    for index, class_name in name_of.items():
        files = [f for f in sorted((DEMO / "test" / str(index)).glob("*.png"))
                 if f.relative_to(DEMO).as_posix() not in marked_files]
        digits = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
        for concept, paint in (("mark", paint_mark), ("stripes", paint_stripes)):
            change = (_logits(model, paint(digits)) - _logits(model, digits))[:, index].mean()
            item = result.score(class_name, concept)
            if item.significant:
                assert np.sign(item.score - 0.5) == np.sign(change), (class_name, concept, item.score, change)
                checked.append((class_name, concept))
    assert len(checked) >= 3, checked  # the mark on the 7, and the stripes where they plainly move a logit


def _logits(model, gray: np.ndarray) -> np.ndarray:
    pixels = model.resize(list(np.repeat(gray[..., None], 3, axis=-1)))
    return model.runtime.forward(model.to_input(pixels), np.full(len(pixels), -1, np.int32)).logits

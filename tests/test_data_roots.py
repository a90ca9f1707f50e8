"""Server paths a visitor types stay inside the data roots; folder scans are bounded and never leave them."""

import os
import shutil
from pathlib import Path

import pytest

from explainers.datasets.scan import scan_folder
from explainers.errors import InputError
from explainers.inputs import data_roots
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.settings import DATA_ROOTS_ENV


@pytest.fixture
def layout(tmp_path):
    """``root/`` (the data root) with a dataset, ``outside/`` beside it with a secret and images."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for digit in ("3", "5"):
        shutil.copytree(DIGITS_TEST_FOLDER / digit, root / "data" / digit)
    (outside / "7").mkdir(parents=True)
    shutil.copy(next((DIGITS_TEST_FOLDER / "7").glob("*.png")), outside / "7" / "seven.png")
    (outside / "secret.txt").write_text("not for visitors")
    return root.resolve(), outside.resolve()


def _refusal(text: str, roots) -> str:
    with pytest.raises(InputError) as caught:
        data_roots.resolve_inside(text, roots)
    return str(caught.value)


def test_paths_inside_a_root_resolve(layout):
    root, _ = layout
    assert data_roots.resolve_inside(str(root / "data"), [root]) == root / "data"
    assert data_roots.resolve_inside("data/3", [root]) == root / "data" / "3"  # relative: from the first root
    assert data_roots.resolve_inside(f"{root}/data/3/../5", [root]) == root / "data" / "5"
    assert data_roots.resolve_inside(str(root), [root]) == root


@pytest.mark.parametrize("spelling", ["absolute", "relative_dotdot", "inner_dotdot", "home", "prefix_twin", "missing"])
def test_paths_outside_get_one_sentence_that_does_not_say_whether_they_exist(layout, spelling, monkeypatch):
    root, outside = layout
    monkeypatch.setenv("HOME", str(outside))
    (root.parent / f"{root.name}2").mkdir()  # /x/root2 starts with /x/root but is not inside it
    text = {
        "absolute": str(outside / "secret.txt"),
        "relative_dotdot": "../outside/secret.txt",
        "inner_dotdot": f"{root}/data/../../outside/secret.txt",
        "home": "~/secret.txt",
        "prefix_twin": str(root.parent / f"{root.name}2"),
        "missing": str(outside / "no-such-file.txt"),
    }[spelling]
    message = _refusal(text, [root])
    assert message == f"'{text}' is not inside the folders this dashboard may read ({root})."


def test_a_link_inside_a_root_pointing_out_is_refused(layout):
    root, outside = layout
    (root / "innocent").symlink_to(outside)
    (root / "note.txt").symlink_to(outside / "secret.txt")
    assert "is not inside" in _refusal(str(root / "innocent" / "secret.txt"), [root])
    assert "is not inside" in _refusal(str(root / "note.txt"), [root])
    assert "is not inside" in _refusal("innocent", [root])


def test_without_roots_no_path_is_accepted(layout):
    root, _ = layout
    assert "reads no folders" in _refusal(str(root), [])


def test_roots_come_from_the_environment(layout, monkeypatch):
    root, outside = layout
    monkeypatch.setenv(DATA_ROOTS_ENV, os.pathsep.join([str(root), str(outside / "missing"), "", str(outside)]))
    assert data_roots.configured_roots() == (root, outside)  # a root that does not exist is dropped
    monkeypatch.delenv(DATA_ROOTS_ENV)
    assert data_roots.configured_roots() == ()


def test_a_model_folder_holding_a_link_out_is_refused(layout):
    root, outside = layout
    saved = root / "saved_model"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"")
    (saved / "variables" / "variables.data-00000-of-00001").symlink_to(outside / "secret.txt")
    with pytest.raises(InputError, match="holds a link"):
        data_roots.resolve_model_path(str(saved), [root])
    (root / "arch.json").write_text("{}")
    (root / "arch.weights.h5").symlink_to(outside / "secret.txt")
    with pytest.raises(InputError, match="holds a link"):
        data_roots.resolve_model_path(str(root / "arch.json"), [root])
    (root / "plain.keras").write_bytes(b"")  # a .keras file reads nothing beside it
    assert data_roots.resolve_model_path("plain.keras", [root]) == root / "plain.keras"


def test_a_scan_never_leaves_the_roots(layout):
    root, outside = layout
    data = root / "data"
    (data / "7").symlink_to(outside / "7")  # a class folder that is a link out
    (data / "3" / "stray.png").symlink_to(outside / "7" / "seven.png")
    (data / "5" / "loop").symlink_to(data / "5")  # a link back up: listed once only
    (data / "5" / "dangling.png").symlink_to(root / "gone.png")
    scan = scan_folder(data, roots=[root])
    assert all(data_roots.inside(p.resolve(), [root]) for p in scan.files)
    assert scan.folders == ["3", "5"] and len(scan.files) == 200
    reasons = dict(scan.skipped)
    assert reasons["7"].startswith("a link to outside") and reasons["3/stray.png"].startswith("a link to outside")
    assert reasons["5/loop"].startswith("a link to a folder already scanned")
    assert reasons["5/dangling.png"] == "a link to nothing"  # reported, not raised
    os.mkfifo(data / "3" / "pipe.png")  # reading it would wait forever
    assert dict(scan_folder(data, roots=[root]).skipped)["3/pipe.png"] == "not a regular file"
    with pytest.raises(InputError, match="is not inside"):
        scan_folder(outside, roots=[root])


def test_a_scan_is_bounded_in_entries_and_depth_and_reports_progress(layout):
    root, _ = layout
    data = root / "data"
    with pytest.raises(InputError, match=r"more than 150 files and folders.*SCAN_MAX_ENTRIES"):
        scan_folder(data, max_entries=150)
    deep = data / "3" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    shutil.copy(next((data / "3").glob("*.png")), deep / "deep.png")
    scan = scan_folder(data, max_depth=3)
    assert not any(p.name == "deep.png" for p in scan.files)
    assert dict(scan.skipped)["3/a/b/c"].startswith("more than 3 folder levels deep")
    assert len(scan_folder(data, max_depth=4).files) == 201
    progress = []
    scan_folder(DIGITS_TEST_FOLDER, on_progress=progress.append)  # 10 folders and 1,000 images
    assert progress == [1000]


def test_an_unreadable_folder_is_skipped_with_its_reason(layout, monkeypatch):
    root, _ = layout
    blocked = root / "data" / "5"
    real_scandir = os.scandir

    def scandir(path):  # the tests run as root, for whom chmod 000 blocks nothing
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = scan_folder(root / "data", roots=[root])
    assert dict(scan.skipped)["5"] == "could not be read (Permission denied)"
    assert scan.empty_folders == ["5"] and len(scan.files) == 100


# What a visitor can type or put in a link: one name past the system's 255-byte limit, and a whole path past PATH_MAX.
LONG_NAME, LONG_PATH = "a" * 300, "/".join(["b" * 200] * 25)


@pytest.mark.parametrize("text", [LONG_NAME, LONG_PATH], ids=["300-character name", "5,000-character path"])
def test_a_path_too_long_for_the_system_gets_one_short_sentence(layout, text):
    root, _ = layout
    for check in (data_roots.resolve_inside, data_roots.resolve_model_path):
        with pytest.raises(InputError) as caught:
            check(text, [root])
        message = str(caught.value)
        assert message.endswith("cannot be opened: file name too long.") and len(message) < 200, message


def test_any_error_the_system_raises_for_a_path_inside_is_one_sentence(layout, monkeypatch):
    root, _ = layout
    real_stat, real_walk = os.stat, os.walk
    blocked = root / "data"

    def stat(path, *args, **kwargs):  # the tests run as root, for whom chmod 000 blocks nothing
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(InputError, match=r"^'data' cannot be opened: permission denied\.$"):
        data_roots.resolve_inside("data", [root])
    monkeypatch.setattr(os, "stat", real_stat)

    def walk(top, *args, **kwargs):
        raise OSError(40, "Too many levels of symbolic links")

    monkeypatch.setattr(os, "walk", walk)
    with pytest.raises(InputError, match=r"^'data' cannot be opened: too many levels of symbolic links\.$"):
        data_roots.resolve_model_path("data", [root])
    monkeypatch.setattr(os, "walk", real_walk)
    looped = root / "looped"  # a model folder holding two links that point at each other
    looped.mkdir()
    (looped / "a").symlink_to(looped / "b")
    (looped / "b").symlink_to(looped / "a")
    with pytest.raises(InputError, match=r"^'looped' holds a loop of links\.$"):
        data_roots.resolve_model_path("looped", [root])


def test_the_engine_answers_a_path_too_long_with_one_short_sentence(tmp_path, capsys):
    import explainers as ex
    from explainers.cli import main
    from explainers.datasets.storage import open_results

    long_path = tmp_path / LONG_NAME
    calls = {
        "load_model": lambda: ex.load_model(str(long_path.with_suffix(".keras"))),
        "scan_folder": lambda: scan_folder(long_path),
        "open_results": lambda: open_results(long_path),
        "decode_image": lambda: ex.decode_image(long_path.with_suffix(".png")),
        "read_labels": lambda: ex.read_labels(long_path.with_suffix(".txt")),
    }
    for name, call in calls.items():
        with pytest.raises(InputError) as caught:
            call()
        message = str(caught.value)
        assert "too long" in message.lower() and len(message) < 250, (name, message)
    capsys.readouterr()
    assert main(["gradcam", "--images", str(long_path), "--out", str(tmp_path / "out")]) != 0
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "too long" in error and len(error) < 250, error


def test_echoed_user_text_is_whole_when_short_and_keeps_both_ends_when_long():
    from explainers.errors import ECHO_LIMIT, echo

    assert echo("validation/cats") == "validation/cats"
    cut = echo("/data/" + "x" * 5000 + "/model.keras")
    assert len(cut) == ECHO_LIMIT and cut.startswith("/data/xxx") and cut.endswith("xxx/model.keras") and "…" in cut

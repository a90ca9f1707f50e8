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

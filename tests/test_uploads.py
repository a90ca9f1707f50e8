"""Uploads land in content-keyed folders; ZIPs unpack only inside their folder and within size limits."""


import pytest

from explainers.errors import InputError
from explainers.inputs import uploads
from helpers import zip_bytes


def test_same_files_reuse_one_folder_and_names_lose_any_path():
    first = uploads.store_files([("../../etc/model.keras", b"abc")])
    again = uploads.store_files([("model.keras", b"abc")])
    assert first == again and (first / "model.keras").read_bytes() == b"abc"
    assert uploads.store_files([("model.keras", b"abd")]) != first


def test_zip_unpacks_its_folders_and_skips_macos_clutter():
    folder = uploads.unpack_zip(zip_bytes({"data/cat/a.png": b"1", "__MACOSX/data/._a.png": b"2", "data/.DS_Store": b"3"}),
                                "data.zip")
    assert (folder / "data" / "cat" / "a.png").read_bytes() == b"1"
    assert not (folder / "__MACOSX").exists() and not (folder / "data" / ".DS_Store").exists()


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/escape.txt", "a/../../escape.txt", "C:/escape.txt"])
def test_zip_member_leaving_the_folder_is_refused(member, tmp_path):
    with pytest.raises(InputError, match="points outside the archive"):
        uploads.unpack_zip(zip_bytes({member: b"x"}), "evil.zip")
    assert not (uploads.cache_dir() / "escape.txt").exists()


def test_zip_bomb_is_stopped_by_the_inflated_size(monkeypatch):
    monkeypatch.setattr(uploads, "MAX_UNPACKED_BYTES", 1 << 20)
    with pytest.raises(InputError, match="unpacks to more than"):
        uploads.unpack_zip(zip_bytes({"zeros.bin": bytes(2 << 20)}), "bomb.zip")


def test_not_a_zip_gets_one_sentence():
    with pytest.raises(InputError, match="'x.zip' is not a ZIP archive"):
        uploads.unpack_zip(b"PK\x03\x04 truncated", "x.zip")


# PIL's name for each format the app says it reads; a format added to IMAGE_FORMATS without one fails here.
_PIL_FORMAT = {"JPEG": "JPEG", "PNG": "PNG", "WebP": "WEBP", "BMP": "BMP", "GIF": "GIF", "TIFF": "TIFF"}


def test_every_accepted_ending_decodes_and_the_refusal_names_exactly_those_formats(tmp_path):
    from PIL import Image

    from explainers.inputs import images

    assert set(images.IMAGE_FORMATS) == set(_PIL_FORMAT)
    for name, suffixes in images.IMAGE_FORMATS.items():
        for suffix in suffixes:
            path = tmp_path / f"red{suffix}"
            Image.new("RGB", (6, 4), (255, 0, 0)).save(path, _PIL_FORMAT[name])
            assert images.decode_image(path).shape == (4, 6, 3), path.name
    with pytest.raises(InputError) as refused:
        images.decode_image(b"neither a picture nor anything else", "notes.txt")
    named = refused.value.args[0].split("(use ")[1].rstrip(").").replace(" or ", ", ").split(", ")
    assert named == list(images.IMAGE_FORMATS)


def test_upload_pickers_accept_and_name_the_same_formats(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from conftest import PROJECT_ROOT
    from explainers.inputs import images

    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.run()
    picker = at.sidebar.get("file_uploader")[0].proto
    assert list(picker.type) == list(images.IMAGE_SUFFIXES)
    assert picker.help.startswith(f"{images.FORMAT_NAMES};")
    at.switch_page("views/dataset.py").run()
    at.radio(key="ds_source").set_value("A ZIP upload").run()
    assert not at.exception, at.exception
    assert images.FORMAT_NAMES in at.file_uploader(key="ds_zip").proto.help

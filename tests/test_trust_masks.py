"""Object masks for the localisation metrics: from a masks folder, a boxes CSV, a digit's strokes, or an upload.

Every mask is checked against pixels placed in the test; every bad input gets one sentence naming the file
and the problem; nothing outside the data roots is read.
"""

import io
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from explainers.datasets.scan import scan_folder
from explainers.errors import InputError
from explainers.inputs.images import decode_image
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.inputs.uploads import unpack_zip
from explainers.trust import masks
from explainers.trust.masks import (
    at_model_size,
    masks_from_boxes,
    masks_from_folder,
    masks_from_strokes,
    split_masks_folder,
)
from helpers import wrap

WIDTH, HEIGHT = 40, 30
# The object of every test image: rows 5..14, columns 10..29 (a box 10,5,30,15 in pixels).
OBJECT = np.zeros((HEIGHT, WIDTH), bool)
OBJECT[5:15, 10:30] = True


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _mask_picture(mode: str, mask: np.ndarray = OBJECT) -> Image.Image:
    """``mask`` drawn white on black in a Pillow ``mode``; RGBA draws the ground as transparent *white*."""
    light = np.where(mask, 255, 0).astype(np.uint8)
    if mode == "RGBA":  # a ground that is white but transparent must not count as the object
        rgba = np.full(mask.shape + (4,), 255, np.uint8)
        rgba[..., 3] = light
        return Image.fromarray(rgba, "RGBA")
    picture = Image.fromarray(light, "L")
    if mode == "RGB":
        return Image.fromarray(np.repeat(np.where(mask, 230, 20).astype(np.uint8)[..., None], 3, -1), "RGB")
    return picture.convert(mode)


@pytest.fixture
def dataset(tmp_path):
    """``root/`` (the only data root) with ``data/cat/001.jpg``, ``data/cat/002.png`` and ``masks/cat/001.png``."""
    root = (tmp_path / "root").resolve()
    for name in ("001.jpg", "002.png"):
        (root / "data" / "cat").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image()).save(root / "data" / "cat" / name)
    (root / "masks" / "cat").mkdir(parents=True)
    _mask_picture("L").save(root / "masks" / "cat" / "001.png")
    return root


def _message(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert message.endswith(".") and "\n" not in message, message
    return message


# --- a masks folder ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "1", "RGB", "RGBA", "P"])
def test_a_folder_mask_in_any_mode_marks_the_white_pixels(dataset, mode):
    _mask_picture(mode).save(dataset / "masks" / "cat" / "001.png")
    found = masks_from_folder("masks", roots=[dataset])
    assert (found.kind, found.source) == ("folder", "masks")
    mask = found.mask_for("cat/001.jpg", _image())
    assert mask.dtype == bool and mask.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(mask, OBJECT)


def test_a_mask_matches_its_image_by_the_path_without_suffix(dataset):
    (dataset / "masks" / "cat" / "001.png").rename(dataset / "masks" / "cat" / "001.bmp")
    _mask_picture("L", ~OBJECT).save(dataset / "masks" / "cat" / "002.jpg", quality=95)
    found = masks_from_folder(dataset / "masks", roots=[dataset])
    np.testing.assert_array_equal(found.mask_for("cat/001.jpg", _image()), OBJECT)
    np.testing.assert_array_equal(found.mask_for("cat/002.png", _image()), ~OBJECT)  # JPEG's ringing stays off 127


def test_a_missing_mask_is_one_sentence(dataset):
    found = masks_from_folder("masks", roots=[dataset])
    message = _message(found.mask_for, "cat/002.png", _image())
    assert message == "No mask for 'cat/002.png' in the masks folder 'masks'."


def test_a_mask_of_another_size_names_both_sizes(dataset):
    _mask_picture("L", np.ones((20, 40), bool)).save(dataset / "masks" / "cat" / "001.png")
    message = _message(masks_from_folder("masks", roots=[dataset]).mask_for, "cat/001.jpg", _image())
    assert message == ("The mask 'cat/001.png' for 'cat/001.jpg' is 40x20 pixels but the image is 40x30; a mask must "
                       "have its image's size.")


@pytest.mark.parametrize("content, problem", [(b"not a picture at all", "is not an image format this app can read"),
                                              ("truncated", "is corrupt or truncated"),
                                              (b"", "is empty (0 bytes)")])
def test_an_unreadable_mask_is_one_sentence(dataset, content, problem):
    target = dataset / "masks" / "cat" / "001.png"
    if content == "truncated":
        content = target.read_bytes()[:60]
    target.write_bytes(content)
    message = _message(masks_from_folder("masks", roots=[dataset]).mask_for, "cat/001.jpg", _image())
    assert message.startswith(f"The mask 'cat/001.png' for 'cat/001.jpg' {problem}")


def test_an_empty_mask_is_one_sentence(dataset):
    _mask_picture("L", np.zeros_like(OBJECT)).save(dataset / "masks" / "cat" / "001.png")
    message = _message(masks_from_folder("masks", roots=[dataset]).mask_for, "cat/001.jpg", _image())
    assert message == ("The mask 'cat/001.png' for 'cat/001.jpg' has no white pixel (luminance above 127), so it marks "
                       "no object.")


def test_two_masks_for_one_image_are_named(dataset):
    _mask_picture("L").save(dataset / "masks" / "cat" / "001.bmp")
    message = _message(masks_from_folder("masks", roots=[dataset]).mask_for, "cat/001.jpg", _image())
    assert message == ("'cat/001.jpg' has several masks in the masks folder 'masks' ('cat/001.bmp' and 'cat/001.png'); "
                       "keep one.")


def test_a_masks_folder_outside_the_data_roots_is_refused(dataset, tmp_path):
    outside = tmp_path / "outside"
    (outside / "cat").mkdir(parents=True)
    _mask_picture("L").save(outside / "cat" / "001.png")
    for typed in (str(outside), "../outside", f"{dataset}/../outside"):
        message = _message(masks_from_folder, typed, roots=[dataset])
        assert message == f"'{typed}' is not inside the folders this dashboard may read ({dataset})."
    with pytest.raises(InputError, match="reads no folders on its server"):
        masks_from_folder(str(dataset / "masks"), roots=[])


def test_a_link_out_of_the_data_roots_is_not_followed(dataset, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _mask_picture("L").save(outside / "secret.png")
    (dataset / "masks" / "cat" / "002.png").symlink_to(outside / "secret.png")
    message = _message(masks_from_folder("masks", roots=[dataset]).mask_for, "cat/002.png", _image())
    assert message == "No mask for 'cat/002.png' in the masks folder 'masks'."


def test_an_overlong_path_is_one_sentence_that_repeats_only_a_bounded_part(dataset):
    typed = "masks/" + "m" * 5000
    message = _message(masks_from_folder, typed, roots=[dataset])
    assert "cannot be opened: file name too long" in message and len(message) < 200


def test_messages_name_no_server_path_the_user_did_not_type(dataset):
    found = masks_from_folder("masks", roots=[dataset])
    _mask_picture("L", np.ones((3, 3), bool)).save(dataset / "masks" / "cat" / "001.png")
    for call in (lambda: found.mask_for("cat/002.png", _image()), lambda: found.mask_for("cat/001.jpg", _image())):
        with pytest.raises(InputError) as caught:
            call()
        assert str(dataset) not in str(caught.value)
    assert str(dataset) not in repr(found)


# --- a boxes CSV ------------------------------------------------------------------------------------------------

def _boxes(folder: Path, text: str, name: str = "boxes.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _box_loop(shape: tuple[int, int], boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """The boxes' union by a plain loop: pixel (row, column) is inside when its centre is."""
    mask = np.zeros(shape, bool)
    for row in range(shape[0]):
        for column in range(shape[1]):
            mask[row, column] = any(x0 <= column + 0.5 < x1 and y0 <= row + 0.5 < y1 for x0, y0, x1, y1 in boxes)
    return mask


@pytest.mark.parametrize("header", ["", "path,x0,y0,x1,y1\n"])
def test_boxes_make_the_union_of_an_images_rows(tmp_path, header):
    csv_path = _boxes(tmp_path, header + "cat/001.jpg,10,5,30,15\ndog/7.png,0,0,4,4\n"
                                          "cat\\001.jpg,2.5,20.2,6.5,29.7\n./dog/8.png,1,1,2,2,extra\n\n")
    found = masks_from_boxes(csv_path)
    assert (found.kind, found.source) == ("boxes", str(csv_path))
    np.testing.assert_array_equal(found.mask_for("cat/001.jpg", _image()),
                                  _box_loop((HEIGHT, WIDTH), [(10, 5, 30, 15), (2.5, 20.2, 6.5, 29.7)]))
    np.testing.assert_array_equal(found.mask_for("cat/001.jpg", _image())[:16], OBJECT[:16])
    assert found.mask_for("dog/7.png", _image()).sum() == 16
    assert found.mask_for("dog/8.png", _image()).sum() == 1


def test_a_csv_with_bad_rows_names_its_first_bad_lines(tmp_path):
    csv_path = _boxes(tmp_path, "path,x0,y0,x1,y1\ncat/1.jpg,1,1,5,5\ncat/2.jpg,a,1,5,5\ncat/3.jpg,5,1,5,9\n"
                                "cat/4.jpg,1,2\ncat/5.jpg,1,9,5,3\ncat/6.jpg,nan,1,5,5\n")
    message = _message(masks_from_boxes, csv_path, shown="boxes.csv")
    assert message == ("'boxes.csv' has 5 bad rows, so no box was read (line 3: x0 'a' is not a number; line 4: x1 <= "
                       "x0; line 5: too few columns (3 of 5); and 2 more); each row is path,x0,y0,x1,y1 in pixels.")
    only_nan = _message(masks_from_boxes, _boxes(tmp_path, "cat/6.jpg,1,1,inf,5\n", "inf.csv"), shown="inf.csv")
    assert "(line 1: x1 'inf' is not a number)" in only_nan
    few = _message(masks_from_boxes, _boxes(tmp_path, "p,1,9,5,3\n", "y.csv"), shown="y.csv")
    assert "(line 1: y1 <= y0)" in few
    single = _message(masks_from_boxes, _boxes(tmp_path, "cat/1.jpg,-1,0,5,5\n"), shown="b.csv")
    assert single == ("'b.csv' has a bad row, so no box was read (line 1: a negative coordinate); each row is "
                      "path,x0,y0,x1,y1 in pixels.")


@pytest.mark.parametrize("text", ["", "path,x0,y0,x1,y1\n", "\n\n"])
def test_an_empty_csv_is_one_sentence(tmp_path, text):
    message = _message(masks_from_boxes, _boxes(tmp_path, text), shown="boxes.csv")
    assert message == "'boxes.csv' holds no boxes; each row is path,x0,y0,x1,y1 in pixels."


def test_a_huge_csv_is_refused_past_the_row_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(masks, "MAX_BOX_ROWS", 5)
    fits = _boxes(tmp_path, "".join(f"c/{i}.png,0,0,1,1\n" for i in range(5)), "fits.csv")
    assert len(masks_from_boxes(fits).spans) == 5
    message = _message(masks_from_boxes, _boxes(tmp_path, "".join(f"c/{i}.png,0,0,1,1\n" for i in range(6))),
                       shown="boxes.csv")
    assert message == "'boxes.csv' holds more than 5 rows, the most a boxes CSV may hold."


def test_a_box_outside_its_image_and_a_missing_box_are_one_sentence(tmp_path):
    found = masks_from_boxes(_boxes(tmp_path, "cat/1.jpg,10,5,30,15\ncat/1.jpg,30,20,41,25\n"), shown="boxes.csv")
    assert (_message(found.mask_for, "cat/1.jpg", _image()) ==
            "The box on line 2 of 'boxes.csv' (30, 20, 41, 25) reaches outside 'cat/1.jpg', which is 40x30 pixels.")
    assert _message(found.mask_for, "cat/2.jpg", _image()) == "No box for 'cat/2.jpg' in 'boxes.csv'."


def test_a_csv_that_is_not_text_or_not_a_file_is_one_sentence(tmp_path):
    binary = tmp_path / "boxes.csv"
    binary.write_bytes(b"cat/1.jpg,\xff\xfe,1,2,3\n")
    assert _message(masks_from_boxes, binary, shown="boxes.csv") == "'boxes.csv' is not a text CSV in UTF-8."
    assert _message(masks_from_boxes, tmp_path, shown="here") == "'here' is a folder; give the boxes CSV file."
    assert _message(masks_from_boxes, tmp_path / "none.csv", shown="none.csv") == "'none.csv' does not exist."


def test_a_boxes_csv_outside_the_data_roots_is_refused(dataset, tmp_path):
    outside = _boxes(tmp_path, "cat/001.jpg,1,1,5,5\n")
    message = _message(masks_from_boxes, str(outside), roots=[dataset])
    assert message == f"'{outside}' is not inside the folders this dashboard may read ({dataset})."
    inside = _boxes(dataset, "cat/001.jpg,10,5,30,15\n")
    found = masks_from_boxes("boxes.csv", roots=[dataset])  # relative: from the first root
    assert found.source == "boxes.csv"
    np.testing.assert_array_equal(found.mask_for("cat/001.jpg", _image()), OBJECT)
    assert inside.exists()


# --- the digits' strokes ------------------------------------------------------------------------------------------

def test_digit_strokes_are_the_bright_pixels_of_each_digit():
    strokes = masks_from_strokes()
    assert (strokes.kind, strokes.threshold) == ("strokes", 127)
    for digit in ("0", "4", "8"):
        for path in sorted((DIGITS_TEST_FOLDER / digit).glob("*.png"))[:5]:
            gray = np.asarray(Image.open(path))  # the file's own 8-bit gray, read without the app's decoder
            assert gray.shape == (28, 28)
            mask = strokes.mask_for(f"{digit}/{path.name}", decode_image(path))
            np.testing.assert_array_equal(mask, gray > 127)
            assert 0.03 < mask.mean() < 0.5  # a stroke, neither nothing nor everything
    np.testing.assert_array_equal(masks_from_strokes(50).mask_for("4/x.png", decode_image(path)), gray > 50)


def test_a_blank_image_has_no_strokes_and_a_bad_threshold_is_refused():
    message = _message(masks_from_strokes().mask_for, "3/blank.png", np.zeros((28, 28, 3), np.uint8))
    assert message == "'3/blank.png' has no pixel brighter than 127, so it has no strokes to serve as its mask."
    assert _message(masks_from_strokes, 300) == "The stroke threshold must be from 0 to 254; got 300."


# --- at the model's size ----------------------------------------------------------------------------------------

def _model(height: int, width: int):
    inputs = keras.Input((height, width, 3))
    return wrap(keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))))


@pytest.mark.parametrize("model_size", [(24, 36), (64, 48), (30, 40)])
def test_a_mask_at_model_size_lands_where_the_resized_image_puts_its_object(model_size):
    model = _model(*model_size)
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    top, left, side = 12, 31, 17
    square = np.zeros((50, 70), bool)
    square[top:top + side, left:left + side] = True
    image[..., 0] = np.where(square, 255, 0)  # red marks the square alone; green and blue stay noise
    resized = model.resize([image])[0]
    together = resized[..., 0] > 127  # where the square went when the image itself was resized
    mask = at_model_size(model, square)
    assert mask.dtype == bool and mask.shape == model_size
    np.testing.assert_array_equal(mask, together)
    # and independently: the stretched square's extent, scaled by each axis's own factor, within a pixel
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    scale_y, scale_x = model_size[0] / 50, model_size[1] / 70
    assert abs(rows[0] - top * scale_y) <= 1 and abs(rows[-1] + 1 - (top + side) * scale_y) <= 1
    assert abs(columns[0] - left * scale_x) <= 1 and abs(columns[-1] + 1 - (left + side) * scale_x) <= 1


# --- masks inside an upload ----------------------------------------------------------------------------------------

def _zip(entries: dict[str, Image.Image]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, picture in entries.items():
            data = io.BytesIO()
            picture.save(data, format="PNG" if name.endswith(".png") else "JPEG")
            archive.writestr(name, data.getvalue())
    return buffer.getvalue()


@pytest.mark.parametrize("prefix, images", [("", ""), ("data/", ""), ("", "images/"), ("data/", "images/")])
def test_an_upload_with_a_masks_folder_splits_into_images_and_masks(prefix, images):
    picture, mask = Image.fromarray(_image()), _mask_picture("L")
    archive = _zip({f"{prefix}{images}cat/001.jpg": picture, f"{prefix}{images}dog/002.png": picture,
                    f"{prefix}masks/cat/001.png": mask, f"{prefix}masks/dog/002.png": _mask_picture("L", ~OBJECT)})
    split = split_masks_folder(unpack_zip(archive, "upload.zip"))
    scan = scan_folder(split.images_root)
    assert scan.folders == ["cat", "dog"]  # masks/ is no class
    paths = [path.relative_to(scan.root).as_posix() for path in scan.files]
    assert paths == ["cat/001.jpg", "dog/002.png"]
    found = masks_from_folder(split.masks_root, shown="masks/ in upload.zip")
    np.testing.assert_array_equal(found.mask_for("cat/001.jpg", decode_image(scan.files[0])), OBJECT)
    np.testing.assert_array_equal(found.mask_for("dog/002.png", decode_image(scan.files[1])), ~OBJECT)
    assert split_masks_folder(unpack_zip(archive, "upload.zip")) == split  # the same answer on a second call


def test_an_upload_without_masks_is_left_as_it_is():
    archive = _zip({"data/cat/001.jpg": Image.fromarray(_image())})
    folder = unpack_zip(archive, "plain.zip")
    assert split_masks_folder(folder) == (folder.resolve() / "data", None)

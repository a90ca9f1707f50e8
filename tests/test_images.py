"""Images of any mode decode to RGB uint8; bad files give one sentence naming the file."""

import io

import numpy as np
import pytest
from PIL import Image

import explainers as ex
from explainers.inputs import images


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def test_grayscale_becomes_three_equal_channels():
    decoded = ex.decode_image(encode(Image.new("L", (5, 4), 77)), "gray.png")
    assert decoded.shape == (4, 5, 3) and decoded.dtype == np.uint8
    assert (decoded == 77).all()


def test_transparent_pixels_become_white_and_opaque_ones_keep_their_colour():
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 255, 0))
    decoded = ex.decode_image(encode(rgba), "alpha.png")
    assert decoded[0, 0].tolist() == [255, 0, 0]
    assert decoded[0, 1].tolist() == [255, 255, 255]


def test_palette_image_with_transparency():
    palette = Image.new("P", (3, 3), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    decoded = ex.decode_image(encode(palette), "palette.png")
    assert decoded[1, 1].tolist() == [10, 200, 30]


def test_cmyk_jpeg():
    decoded = ex.decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"), "cmyk.jpg")
    red, green, blue = decoded[4, 4].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], np.uint16)
    decoded = ex.decode_image(encode(Image.fromarray(values)), "depth16.png")
    assert decoded[0, :, 0].tolist() == [0, 128, 255]


def test_exif_orientation_is_honoured():
    wide = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    decoded = ex.decode_image(encode(wide, "JPEG", exif=exif), "phone.jpg")
    assert decoded.shape == (40, 20, 3)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "GIF", "TIFF"])
def test_other_formats(fmt):
    decoded = ex.decode_image(encode(Image.new("RGB", (6, 6), (200, 100, 50)), fmt), f"x.{fmt.lower()}")
    assert decoded.shape == (6, 6, 3)


def test_truncated_file_names_the_file():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    with pytest.raises(ex.InputError, match=r"^'half\.png' is corrupt or truncated"):
        ex.decode_image(data[: len(data) // 2], "half.png")


def test_non_image_names_the_file():
    with pytest.raises(ex.InputError, match=r"^'notes\.png' is not an image format"):
        ex.decode_image(b"these are my notes, not a picture", "notes.png")


def test_empty_file_names_the_file():
    with pytest.raises(ex.InputError, match=r"^'empty\.jpg' is empty"):
        ex.decode_image(b"", "empty.jpg")


def test_missing_path_names_the_file(tmp_path):
    with pytest.raises(ex.InputError, match="'gone.png' could not be read"):
        ex.decode_image(tmp_path / "gone.png")


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(ex.InputError, match=r"'big\.png' is 100x100 pixels \(0\.0 megapixels\), over the limit of 0\.0 megapixels"):
        ex.decode_image(encode(Image.new("RGB", (100, 100))), "big.png")


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1 << 20)
    path = tmp_path / "huge.jpg"
    with path.open("wb") as sparse:  # 2 GB on paper, no space on disk
        sparse.truncate(2 << 30)
    monkeypatch.setattr(type(path), "read_bytes", lambda self: pytest.fail("the file was read"))
    with pytest.raises(ex.InputError, match=r"'huge\.jpg' is 2048 MB; an image file may be at most 1 MB\."):
        ex.decode_image(path)


def test_every_error_is_one_sentence():
    for data in (b"", b"garbage"):
        with pytest.raises(ex.InputError) as error:
            ex.decode_image(data, "f.png")
        message = str(error.value)
        assert "\n" not in message and message.endswith(".")


def test_content_digest_ignores_names_but_not_pixels():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert ex.content_digest([a]) == ex.content_digest([a.copy()])
    assert ex.content_digest([a]) != ex.content_digest([b])


def test_samples_are_real_photos():
    samples = ex.sample_images()
    assert {"cat_chelsea", "coffee", "astronaut", "rocket", "china_temple", "flower", "grace_hopper"} <= set(samples)
    for path in samples.values():
        height, width, _ = ex.decode_image(path).shape
        assert min(height, width) >= 300


def test_a_pipe_named_like_an_image_is_refused_without_reading_it(tmp_path):
    import os

    pipe = tmp_path / "photo.png"
    os.mkfifo(pipe)  # opening it to read would wait for a writer that never comes
    with pytest.raises(ex.InputError, match="'photo.png' is not a regular file."):
        ex.decode_image(pipe)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none: enough for a decoder to size it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(10_000, 9_500), (20_000, 10_000)], ids=["95 MP", "200 MP"])
def test_an_image_over_pillows_limit_is_refused_with_that_limit(width, height):
    # Pillow refuses anything over Image.MAX_IMAGE_PIXELS (about 89.5 MP) whatever we allow: that is the real limit.
    assert images.MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    with pytest.raises(ex.InputError) as caught:
        ex.decode_image(_png_header(width, height), "huge.png")
    message = str(caught.value)
    assert f"limit of {Image.MAX_IMAGE_PIXELS / 1e6:.1f} megapixels." in message and "100 megapixel" not in message
    if width * height < 2 * Image.MAX_IMAGE_PIXELS:  # past twice the limit Pillow does not even give the size
        assert message == f"'huge.png' is {width}x{height} pixels (95.0 megapixels), over the limit of 89.5 megapixels."

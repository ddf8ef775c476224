import io

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

from skface import ImageDecodeError, ImagePreprocessor
from skface.data.imaging import decode_image


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=95, **kwargs)
    return buf.getvalue()


def _half_red_half_blue(width=40, height=20) -> Image.Image:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = (255, 0, 0)
    array[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(array)


@pytest.mark.parametrize("color, channels", [("grayscale", 1), ("rgb", 3)])
def test_output_shape_and_dtype(color, channels):
    images = [np.zeros((30, 20, 3), dtype=np.uint8), np.full((25, 25), 7, dtype=np.uint8)]
    out = ImagePreprocessor(image_size=16, color=color).fit_transform(images)
    assert out.shape == (2, 16, 16, channels)
    assert out.dtype == np.uint8


def test_paths_bytes_pil_and_arrays_give_the_same_pixels(tmp_path):
    image = _half_red_half_blue()
    path = tmp_path / "face.png"
    image.save(path)
    pre = ImagePreprocessor(image_size=8, color="rgb")
    out = pre.transform([path, str(path), _png(image), image, np.asarray(image)])
    for i in range(1, 5):
        np.testing.assert_array_equal(out[0], out[i])


def test_4d_and_3d_batches():
    batch = np.random.RandomState(0).randint(0, 256, (3, 12, 12, 3)).astype(np.uint8)
    out = ImagePreprocessor(image_size=12, color="rgb").transform(batch)
    np.testing.assert_array_equal(out, batch)
    gray = ImagePreprocessor(image_size=12).transform(batch[..., 0])
    np.testing.assert_array_equal(gray[..., 0], batch[..., 0])


def test_float_arrays_are_read_on_the_0_255_scale():
    out = ImagePreprocessor(image_size=4).transform([np.full((4, 4), 100.4)])
    assert np.all(out == 100)


def test_exif_orientation_is_honoured():
    # Stored landscape (red left, blue right); EXIF 6 means "rotate 90 degrees clockwise to view".
    image = _half_red_half_blue(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _jpeg(image, exif=exif.tobytes())
    out = decode_image(data, 20, "rgb")
    top, bottom = out[2, 10], out[-3, 10]
    assert top[0] > 200 and top[2] < 60  # red on top once rotated clockwise
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize(
    "mode, value",
    [("L", 128), ("RGB", (128, 128, 128)), ("CMYK", (0, 0, 0, 127)), ("I;16", 128 * 257), ("I", 128 * 257)],
)
def test_modes(mode, value):
    image = Image.new(mode, (10, 10), value)
    out = decode_image(image, 5, "grayscale")
    assert out.shape == (5, 5, 1)
    assert abs(int(out.mean()) - 128) <= 2


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    out = decode_image(_png(image), 5, "rgb")
    assert np.all(out == 255)


def test_palette_with_transparency():
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    out = decode_image(_png(image), 5, "rgb")
    assert np.all(out == 255)
    image2 = Image.new("P", (10, 10), 1)
    image2.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    out2 = decode_image(image2, 5, "rgb")
    assert np.all(out2[..., 0] == 255) and np.all(out2[..., 1] == 0)


def test_sixteen_bit_png_file(tmp_path):
    array = np.full((8, 8), 40000, dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    out = decode_image(path, 8, "grayscale")
    assert abs(int(out.mean()) - round(40000 / 257)) <= 1


def test_bad_item_names_its_index_and_path(tmp_path):
    good = tmp_path / "good.png"
    Image.new("L", (8, 8)).save(good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    with pytest.raises(ImageDecodeError, match=r"item 1 \(.*notes\.jpg.*\).*not an image"):
        ImagePreprocessor(image_size=8).transform([good, bad])


def test_truncated_image_is_an_error():
    data = _jpeg(Image.new("RGB", (64, 64), (10, 200, 30)))
    with pytest.raises(ImageDecodeError, match="item 0.*corrupt or truncated"):
        ImagePreprocessor(image_size=8).transform([data[: len(data) // 2]])


@pytest.mark.parametrize(
    "item, match",
    [
        (b"", "empty"),
        (b"garbage bytes", "not an image"),
        (np.zeros((4, 4, 2), dtype=np.uint8), r"shape \(h, w\)"),
        (np.full((4, 4), 300.0), "0-255 scale"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.array([["a"]]), "numeric"),
        (12345, "cannot read an image from a int"),
    ],
)
def test_bad_items(item, match):
    with pytest.raises(ImageDecodeError, match=match):
        ImagePreprocessor(image_size=4).transform([item])


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        ImagePreprocessor().transform([tmp_path / "nope.jpg"])


def test_pixel_limit_guards_against_decompression_bombs():
    data = _png(Image.new("L", (300, 300)))
    with pytest.raises(ImageDecodeError, match="over the limit of 10,000"):
        ImagePreprocessor(image_size=8, max_pixels=10_000).transform([data])
    assert ImagePreprocessor(image_size=8, max_pixels=None).transform([data]).shape == (1, 8, 8, 1)


def test_single_item_must_be_wrapped(tmp_path):
    with pytest.raises(ImageDecodeError, match=r"wrap it in a list"):
        ImagePreprocessor().transform(str(tmp_path / "a.jpg"))
    with pytest.raises(ImageDecodeError, match=r"got shape \(4, 4, 4, 4, 1\)"):
        ImagePreprocessor().transform(np.zeros((4, 4, 4, 4, 1)))


@pytest.mark.parametrize(
    "params, match",
    [({"image_size": 0}, "image_size must be a positive integer"), ({"color": "sepia"}, "color must be")],
)
def test_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        ImagePreprocessor(**params).fit([])


def test_is_clonable_and_stores_params_unchanged():
    pre = ImagePreprocessor(image_size=32, color="rgb")
    assert clone(pre).get_params() == {"image_size": 32, "color": "rgb", "max_pixels": pre.max_pixels}


def test_the_same_pixels_as_jpeg_and_png_give_the_same_image(tmp_path):
    """A 200 px face crop is not decoded at reduced scale: JPEG or PNG, the same pixels make the same input."""
    import io

    from skface.data.imaging import decode_image

    rng = np.random.RandomState(0)
    smooth = np.kron(rng.randint(0, 256, (25, 25, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 200x200
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    as_png = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(as_png, format="PNG")  # the JPEG's own pixels, losslessly
    np.testing.assert_array_equal(decode_image(jpeg, 80, "rgb"), decode_image(as_png.getvalue(), 80, "rgb"))
    # A JPEG far larger than the output is still decoded at reduced scale, for speed.
    large = io.BytesIO()
    Image.fromarray(np.kron(smooth, np.ones((10, 10, 1), dtype=np.uint8))).save(large, format="JPEG")
    image = Image.open(io.BytesIO(large.getvalue()))
    image.draft("RGB", (4 * 80, 4 * 80))
    assert image.size == (500, 500) and decode_image(large.getvalue(), 80, "rgb").shape == (80, 80, 3)


def test_a_non_square_image_is_cropped_to_its_central_square_not_squashed():
    """A face is never squashed: the central square of a portrait or landscape image is resized."""
    centre = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    portrait = np.concatenate([np.zeros((20, 40, 3), np.uint8), centre, np.full((20, 40, 3), 255, np.uint8)])
    landscape = portrait.transpose(1, 0, 2)
    for image, square in ((portrait, centre), (landscape, centre.transpose(1, 0, 2))):
        out, expected = decode_image(image, 20, "rgb").astype(int), decode_image(square, 20, "rgb").astype(int)
        # The same pixels (to rounding) but on the edges, where the resize's filter reaches just past the square.
        assert np.abs(out - expected)[1:-1, 1:-1].max() <= 1
        assert np.abs(out - expected).mean() < 3


def test_pixel_count_reads_the_header_only():
    import struct
    import tracemalloc
    import zlib

    from skface.data.imaging import pixel_count

    png = bytearray(_png(Image.new("L", (2, 2))))
    # Claim 9000x9000 in the header (IHDR at byte 16), with its checksum: 81 million pixels, never decoded.
    png[16:24] = struct.pack(">II", 9000, 9000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    tracemalloc.start()
    try:
        assert pixel_count(bytes(png)) == 81_000_000
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
    assert pixel_count(np.zeros((30, 40, 3), dtype=np.uint8)) == 1200
    assert pixel_count(Image.new("L", (7, 5))) == 35
    with pytest.raises(ImageDecodeError, match="not an image in a format Pillow reads"):
        pixel_count(b"plain text")
    with pytest.raises(ImageDecodeError, match="cannot read an image from a int"):
        pixel_count(42)

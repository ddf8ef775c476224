"""Decoding one image into the array layout that skface's network reads.

Every path into the network goes through :func:`decode_image`: the UTKFace
loader, :class:`skface.ImagePreprocessor` and the served model, so an image is
turned into exactly the same pixels wherever it comes from.
"""

from __future__ import annotations

import io
import os
import struct
from numbers import Integral

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from ..exceptions import ImageDecodeError

COLORS = ("grayscale", "rgb")

#: Largest image, in pixels, that :func:`decode_image` accepts by default
#: (about 50 megapixels). Larger files are refused before they are decoded,
#: which guards against decompression bombs.
#: A JPEG is decoded at reduced scale only when it stays at least this many times the output size.
DRAFT_MARGIN = 4
MAX_PIXELS = 50_000_000

# Modes that carry an alpha channel; they are composited on white so that a
# transparent background does not turn black.
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}

# What Pillow raises on a malformed or unsupported file, beyond the
# OSError / SyntaxError / ValueError / EOFError its decoders document. Each was
# found by fuzzing (tests/test_fuzz_decoding.py keeps the search running):
# struct.error, TypeError and AttributeError from parsing a malformed EXIF
# block, RuntimeError from the AVIF decoder, NotImplementedError (a
# RuntimeError, named for the reader) from the DDS reader's unknown pixel
# formats. MemoryError is not among them: max_pixels bounds what is decoded.
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
    struct.error, TypeError, AttributeError, RuntimeError, NotImplementedError,
)

# The EXIF orientation tag's values, as ImageOps.exif_transpose reads them.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def check_image_params(image_size, color) -> tuple[int, str]:
    """Validate ``image_size`` and ``color``; return them normalised."""
    if isinstance(image_size, bool) or not isinstance(image_size, Integral) or image_size < 1:
        raise ValueError(
            f"image_size must be a positive integer (the side of the square image in "
            f"pixels, e.g. 64), got {image_size!r}."
        )
    if not isinstance(color, str) or color.lower() not in COLORS:
        raise ValueError(f"color must be 'grayscale' or 'rgb', got {color!r}.")
    return int(image_size), color.lower()


def n_channels(color: str) -> int:
    """Number of channels of an image in ``color`` mode."""
    return 1 if color == "grayscale" else 3


def decode_image(
    source,
    image_size: int = 64,
    color: str = "grayscale",
    *,
    max_pixels: int | None = MAX_PIXELS,
) -> np.ndarray:
    """Decode one image and return it as a ``(image_size, image_size, c)`` uint8 array.

    Parameters
    ----------
    source : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        A file path, the encoded bytes of an image file (JPEG, PNG, ...), a
        PIL image, or an array of shape ``(h, w)`` or ``(h, w, 1|3|4)``.
        Arrays are read on the 0-255 scale: uint8, or integers or floats
        within [0, 255].
    image_size : int, default=64
        Side of the square output image in pixels. A square image is resized
        whole; a non-square one is cropped to its central square first, so
        that a face is never squashed (UTKFace's crops, and the face step's
        output, are square).
    color : {"grayscale", "rgb"}, default="grayscale"
        Output colour: one channel or three.
    max_pixels : int or None, default=MAX_PIXELS
        Files with more pixels are refused before decoding. ``None`` lifts
        the limit.

    Returns
    -------
    image : ndarray of shape (image_size, image_size, 1 or 3), dtype uint8

    Raises
    ------
    ImageDecodeError
        If the source is not a readable image; the message says why.
    """
    image_size, color = check_image_params(image_size, color)
    image = load_image(source, color, size_hint=image_size, max_pixels=max_pixels)
    try:
        if image.size != (image_size, image_size):
            width, height = image.size
            side = min(width, height)
            box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
            image = image.resize((image_size, image_size), Image.Resampling.BILINEAR, box=box)
        array = np.asarray(image, dtype=np.uint8)
    except _DECODE_ERRORS as exc:
        raise _corrupt("the image could not be decoded", exc) from exc
    return array.reshape(image_size, image_size, n_channels(color))


def load_image(source, color: str = "rgb", *, size_hint: int | None = None,
               max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Decode one image, upright (EXIF orientation applied) and in ``color``, at its own size.

    :func:`decode_image` is this plus the resize; face detection uses it
    alone, at full resolution.

    Parameters
    ----------
    source : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        As in :func:`decode_image`.
    color : {"grayscale", "rgb"}, default="rgb"
        Colour of the result.
    size_hint : int, optional
        The side the image will be resized to: JPEG files are then decoded
        at the smallest of 1/2, 1/4 or 1/8 scale that still covers it (for
        free). None decodes at full resolution.
    max_pixels : int or None, default=MAX_PIXELS
        Files with more pixels are refused before decoding. ``None`` lifts
        the limit.

    Returns
    -------
    image : PIL.Image.Image
        In mode ``"L"`` or ``"RGB"``.

    Raises
    ------
    ImageDecodeError
        If the source is not a readable image; the message says why.
    """
    if isinstance(source, np.ndarray):
        image = _array_to_pil(source)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        image = _open(source, size_hint, max_pixels)
    else:
        raise _not_an_image_source(source)
    try:
        return _to_color(_upright(image), color)
    except _DECODE_ERRORS as exc:
        raise _corrupt("the image could not be decoded", exc) from exc


def pixel_count(source) -> int:
    """Pixels of one image, from its header for a file or bytes: what decoding it would take, without decoding.

    Parameters
    ----------
    source : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        As in :func:`decode_image`.

    Returns
    -------
    pixels : int
        Width times height.

    Raises
    ------
    ImageDecodeError
        If the source is not an image whose header can be read.
    """
    if isinstance(source, np.ndarray):
        return int(source.shape[0]) * int(source.shape[1]) if source.ndim >= 2 else 0
    if isinstance(source, Image.Image):
        width, height = source.size
    elif isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        with _header(source)[0] as image:
            width, height = image.size
    else:
        raise _not_an_image_source(source)
    return width * height


def _not_an_image_source(source) -> ImageDecodeError:
    return ImageDecodeError(f"cannot read an image from a {type(source).__name__}; pass a file path, "
                            "encoded image bytes, a PIL image or a numpy array.")


def _header(source) -> tuple[Image.Image, str]:
    """The image opened lazily (its header read, its pixels not), and how to name it in a message."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageDecodeError("the image is empty (0 bytes).")
        fp = io.BytesIO(bytes(source))
        what = "the data"
    else:
        fp = os.fspath(source)
        if not os.path.isfile(fp):
            raise ImageDecodeError(f"no such file: {fp!r}.")
        if os.path.getsize(fp) == 0:
            raise ImageDecodeError(f"the file {fp!r} is empty (0 bytes).")
        what = f"the file {fp!r}"
    try:
        return Image.open(fp), what
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            f"{what} is not an image in a format Pillow reads (JPEG, PNG, BMP, GIF, "
            "TIFF, WebP, ...)."
        ) from exc
    except _DECODE_ERRORS as exc:
        raise _corrupt(f"{what} could not be opened", exc) from exc


def _open(source, size_hint: int | None, max_pixels: int | None) -> Image.Image:
    image, what = _header(source)
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            f"the image is {width}x{height} = {width * height:,} pixels, over the limit "
            f"of {max_pixels:,}; downscale it first (this limit guards against "
            "decompression bombs)."
        )
    # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; draft() picks the smallest scale that still covers
    # the size asked. Asked for DRAFT_MARGIN times the output, a JPEG is decoded at full resolution unless it is
    # much larger than the output (a phone photo for an 80 px input), so the same pixels give the same input
    # whether they come as JPEG or PNG, where it matters: a 200 px face crop, drafted to half its size before
    # the resize, scored differently from the same pixels as PNG.
    if image.format == "JPEG" and size_hint is not None:
        image.draft(image.mode, (DRAFT_MARGIN * size_hint, DRAFT_MARGIN * size_hint))
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        raise _corrupt(f"{what} could not be decoded", exc) from exc
    return image


def _corrupt(what: str, exc: BaseException) -> ImageDecodeError:
    # Pillow's own message, with its type where the message alone says little
    # (struct.error's "unpack requires a buffer of 4 bytes").
    detail = str(exc).strip() or "no details"
    if not isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):
        detail = f"{type(exc).__name__}: {detail}"
    return ImageDecodeError(
        f"{what}, the image may be corrupt or truncated, or in a variant that Pillow "
        f"does not read ({detail}); check the file, or convert it to PNG or JPEG."
    )


def _upright(image: Image.Image) -> Image.Image:
    # ImageOps.exif_transpose also writes the EXIF block back without the
    # orientation tag, which fails on a malformed block (struct.error,
    # TypeError, AttributeError) whose pixels are fine; only the tag is needed.
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    method = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return image.copy() if method is None else image.transpose(method)


def _array_to_pil(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageDecodeError(
            f"an image array must have shape (h, w), (h, w, 1), (h, w, 3) or (h, w, 4), "
            f"got {array.shape}."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageDecodeError(f"the image array is empty, shape {array.shape}.")
    if array.dtype != np.uint8:
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        elif np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)):
                raise ImageDecodeError("the image array holds NaN or infinite values.")
            low, high = array.min(), array.max()
            if low < 0 or high > 255:
                raise ImageDecodeError(
                    f"image arrays are read on the 0-255 scale, got values from {low} to "
                    f"{high}; rescale them to [0, 255] (for 16-bit images divide by 257)."
                )
            array = np.rint(array).astype(np.uint8)
        else:
            raise ImageDecodeError(
                f"an image array must be numeric, got dtype {array.dtype}."
            )
    return Image.fromarray(np.ascontiguousarray(array))


def _to_color(image: Image.Image, color: str) -> Image.Image:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8))
    elif mode == "F":
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    elif mode == "P" or mode == "1":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    target = "L" if color == "grayscale" else "RGB"
    if image.mode != target:
        image = image.convert(target)
    return image

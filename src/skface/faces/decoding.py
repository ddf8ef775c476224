"""Decoding one image at full resolution, for face detection and alignment."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from ..data.imaging import MAX_PIXELS, _array_to_pil, _open, _to_color
from ..exceptions import ImageDecodeError

# _open lets JPEG decode at a reduced scale that still covers this side; a side
# no image reaches keeps every file at full resolution.
_FULL_RESOLUTION = 1 << 30


def load_rgb(source, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode one image to a full-resolution RGB array.

    The same steps as :func:`skface.data.imaging.decode_image` (EXIF rotation,
    alpha composited on white, 16-bit and palette modes, the pixel limit),
    without the final resize.

    Parameters
    ----------
    source : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        A file path, encoded image bytes, a PIL image, or an array of shape
        ``(h, w)`` or ``(h, w, 1|3|4)`` on the 0-255 scale.
    max_pixels : int or None, default=MAX_PIXELS
        Files with more pixels are refused before decoding. ``None`` lifts
        the limit.

    Returns
    -------
    image : ndarray of shape (h, w, 3), dtype uint8

    Raises
    ------
    ImageDecodeError
        If the source is not a readable image; the message says why.
    """
    if isinstance(source, np.ndarray):
        if source.dtype == np.uint8 and source.ndim == 3 and source.shape[2] == 3:
            return source
        image = _array_to_pil(source)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        image = _open(source, _FULL_RESOLUTION, max_pixels)
    else:
        raise ImageDecodeError(
            f"cannot read an image from a {type(source).__name__}; pass a file path, "
            "encoded image bytes, a PIL image or a numpy array."
        )
    try:
        return np.asarray(_to_color(ImageOps.exif_transpose(image), "rgb"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(
            f"the image could not be decoded, it may be corrupt or truncated ({exc})."
        ) from exc

"""Boxes and labels drawn on a photo, for people who would rather look than read coordinates."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_COLORS = {"female": (230, 60, 140), "male": (40, 120, 230), None: (160, 160, 160)}


def draw_faces(image: np.ndarray, faces: list[dict]) -> Image.Image:
    """The image with each face's box and a label ``"31 F 0.93"`` (age, gender, its probability).

    Parameters
    ----------
    image : ndarray of shape (h, w, 3), dtype uint8
        The photo, as :func:`skface.faces.load_rgb` decodes it.
    faces : list of dict
        The ``faces`` of a row of :func:`skface.network.pipeline.predict_rows`:
        ``box`` (``[x, y, w, h]``, or None for the whole image), ``age``,
        ``gender`` and ``gender_probability``.

    Returns
    -------
    annotated : PIL.Image.Image
    """
    annotated = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(annotated)
    height, width = image.shape[:2]
    line = max(2, round(min(height, width) / 200))
    font = ImageFont.load_default(size=max(12, round(min(height, width) / 30)))
    for face in faces:
        x, y, w, h = face["box"] if face.get("box") is not None else (0, 0, width, height)
        color = _COLORS.get(face.get("gender"), _COLORS[None])
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=color, width=line)
        if face.get("age") is None:
            continue
        label = f"{face['age']:.0f} {face['gender'][0].upper()} {face['gender_probability']:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tx, ty = x, max(0, y - (bottom - top) - 2 * line)
        draw.rectangle([tx, ty, tx + right - left + 2 * line, ty + bottom - top + 2 * line], fill=color)
        draw.text((tx + line - left, ty + line - top), label, fill=(255, 255, 255), font=font)
    return annotated

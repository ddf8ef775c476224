"""Synthetic face images with known age and gender, for tests and demos.

The faces are cartoons drawn with Pillow: an ellipse for the head, simple
eyes, nose, mouth and hair. Age and gender are drawn into them on purpose so
that a small CNN can learn both:

* age: a child's head is rounder, its eyes larger and lower on the face, its
  nose and mouth smaller; forehead lines, crow's feet, nasolabial folds and
  under-eye lines appear from the mid-twenties and deepen with age; hair greys
  from about 45 and is white by about 75; many older men lose hair from the
  forehead back; age spots show on the elderly. Every cue changes smoothly
  with age, so age regression is learnable to within a few years;
* gender: women have long hair down the sides of the face (a few wear it at
  chin length), thinner eyebrows and, in colour, often lipstick; men have
  short hair, a slightly wider, squarer jaw, and many adult men a beard,
  stubble or moustache.

Nuisance variation keeps the task from being trivial: skin tone, hair colour,
background colour and brightness, small shifts, scale and rotation, a lighting
gradient and pixel noise.

A model trained on these faces knows nothing about real faces. Use them to
test code paths, to demonstrate the API without downloading UTKFace, and to
check that a network can learn at all; never to judge how a model will do on
photographs.

:func:`make_synthetic_faces` returns the faces as arrays, ready for
:class:`skface.AgeGenderCNN`; :func:`write_synthetic_utkface` writes them as a
folder of JPEG files named like UTKFace's, so that the UTKFace loader can be
exercised end to end. For the same ``n_samples``, ``image_size`` and
``random_state`` both draw the same labels and the same faces.
"""

from __future__ import annotations

import math
import os
import pathlib
from numbers import Integral

import numpy as np
from PIL import Image, ImageDraw
from sklearn.utils import check_random_state

from .imaging import check_image_params, decode_image, n_channels

__all__ = ["make_synthetic_faces", "write_synthetic_utkface"]

# Youngest and oldest age, in years, that the generators draw.
_MIN_AGE = 1
_MAX_AGE = 90

# UTKFace's race codes: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others, drawn
# with roughly the shares they have in UTKFace.
_RACE_WEIGHTS = np.array([0.42, 0.19, 0.15, 0.17, 0.07])
# Mean skin colour (RGB) for each race code; each face varies around it.
_SKIN_TONES = np.array(
    [
        [232, 196, 170],
        [120, 82, 60],
        [226, 190, 155],
        [178, 128, 94],
        [200, 156, 120],
    ],
    dtype=float,
)
_HAIR_COLOURS = {
    "black": (28, 24, 22),
    "dark_brown": (66, 44, 30),
    "brown": (110, 74, 44),
    "light_brown": (150, 112, 70),
    "blond": (210, 178, 110),
    "red": (150, 70, 36),
}
# Hair colours each race code draws from, with their probabilities.
_HAIR_BY_RACE = [
    (
        ["black", "dark_brown", "brown", "light_brown", "blond", "red"],
        [0.15, 0.25, 0.25, 0.15, 0.15, 0.05],
    ),
    (["black", "dark_brown"], [0.8, 0.2]),
    (["black", "dark_brown"], [0.85, 0.15]),
    (["black", "dark_brown"], [0.8, 0.2]),
    (["black", "dark_brown", "brown"], [0.5, 0.35, 0.15]),
]
_WHITE_HAIR = (228, 226, 222)
_IRIS_COLOURS = [(60, 40, 25), (40, 70, 110), (70, 90, 60), (30, 25, 20)]

# Name of a UTKFace file: [age]_[gender]_[race]_[date&time].jpg.chip.jpg.
_UTKFACE_SUFFIX = ".jpg.chip.jpg"
# Fixed date part of the 17-digit date&time field; the sample index fills the
# other 9 digits, which keeps every name unique.
_DATE_PREFIX = "20170109"


def make_synthetic_faces(
    n_samples: int = 1000,
    *,
    image_size: int = 64,
    color: str = "grayscale",
    random_state: int | np.random.RandomState | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate cartoon faces whose age and gender can be read from the pixels.

    Read the module documentation for what is drawn. A model trained on
    these faces knows nothing about real faces.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of faces.
    image_size : int, default=64
        Side of the square images in pixels.
    color : {"grayscale", "rgb"}, default="grayscale"
        One channel or three.
    random_state : int, numpy.random.RandomState, numpy.random.Generator or None, \
default=None
        Seeds the labels and the faces. Pass an int for the same faces on
        every call.

    Returns
    -------
    X : ndarray of shape (n_samples, image_size, image_size, c), dtype uint8
        The faces; ``c`` is 1 for ``"grayscale"`` and 3 for ``"rgb"``. Each
        face is drawn in RGB and converted and resized by
        :func:`skface.data.imaging.decode_image`, like every other image skface
        reads.
    y : ndarray of shape (n_samples, 2), dtype float64
        Column 0 is the age in whole years, from 1 to 90, most of them
        between 20 and 40 as in UTKFace, with children and elderly people
        present; column 1 is the gender, 0.0 for male and 1.0 for female,
        about half each.

    See Also
    --------
    write_synthetic_utkface : The same faces as a UTKFace-style folder.

    Examples
    --------
    >>> from skface.data.synthetic import make_synthetic_faces
    >>> X, y = make_synthetic_faces(8, image_size=32, random_state=0)
    >>> X.shape, X.dtype
    ((8, 32, 32, 1), dtype('uint8'))
    >>> y.shape
    (8, 2)
    """
    n_samples = _check_n_samples(n_samples)
    image_size, color = check_image_params(image_size, color)
    rng = _check_random_state(random_state)
    ages, genders, races, seeds = _sample_labels(n_samples, rng)
    canvas = _canvas_size(image_size)
    X = np.empty((n_samples, image_size, image_size, n_channels(color)), dtype=np.uint8)
    for i in range(n_samples):
        face = _draw_face(ages[i], genders[i], races[i], np.random.default_rng(seeds[i]), canvas)
        X[i] = decode_image(face, image_size, color)
    y = np.column_stack([ages, genders]).astype(np.float64)
    return X, y


def write_synthetic_utkface(
    path: str | os.PathLike,
    n_samples: int = 1000,
    *,
    image_size: int = 200,
    random_state: int | np.random.RandomState | np.random.Generator | None = None,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Write synthetic faces as a folder of UTKFace-style JPEG files.

    Each face is drawn in RGB (images under 128 pixels at twice their size,
    then resized, as :func:`make_synthetic_faces` does), saved as JPEG at
    quality 90 and named as in UTKFace's cropped set:
    ``[age]_[gender]_[race]_[date&time].jpg.chip.jpg``, for example
    ``34_1_0_20170109000000012.jpg.chip.jpg``. ``gender`` is 0 for
    male and 1 for female; ``race`` is UTKFace's code from 0 to 4 (0 White,
    1 Black, 2 Asian, 3 Indian, 4 Others) and sets the skin tone. The 17-digit
    ``date&time`` field is ``20170109`` followed by the sample index on nine
    digits, so every name is unique; it is not a real time of day.

    For the same ``n_samples`` and ``random_state``, the labels are those of
    ``make_synthetic_faces(n_samples, image_size=image_size, color="rgb",
    random_state=random_state)`` and the faces are the same drawings. The
    pixels differ slightly, because the files are JPEG-compressed.

    A model trained on these faces knows nothing about real faces.

    Parameters
    ----------
    path : str or os.PathLike
        Folder to write into; it is created, with its parents, if missing.
    n_samples : int, default=1000
        Number of faces, and of files.
    image_size : int, default=200
        Side of the square images in pixels (UTKFace's crops are 200).
    random_state : int, numpy.random.RandomState, numpy.random.Generator or None, \
default=None
        Seeds the labels and the faces.
    overwrite : bool, default=False
        If False, a folder that exists and is not empty is refused, so that
        synthetic faces never mix with other files. If True, the
        ``*.jpg.chip.jpg`` files already in the folder are deleted before
        writing; other files are left alone.

    Returns
    -------
    paths : list of pathlib.Path
        The written files, in sample order.

    Raises
    ------
    ValueError
        If a parameter is invalid, if ``path`` is a file, or if the folder is
        not empty and ``overwrite`` is False.

    See Also
    --------
    make_synthetic_faces : The same faces as arrays.

    Examples
    --------
    >>> import tempfile
    >>> from skface.data.synthetic import write_synthetic_utkface
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     paths = write_synthetic_utkface(folder, 3, image_size=64, random_state=0)
    ...     print([path.name for path in paths])
    ['35_0_1_20170109000000000.jpg.chip.jpg', '46_1_3_20170109000000001.jpg.chip.jpg',
     '38_0_4_20170109000000002.jpg.chip.jpg']
    >>> from skface.data.synthetic import make_synthetic_faces
    >>> make_synthetic_faces(3, image_size=64, color="rgb", random_state=0)[1]
    array([[35.,  0.],
           [46.,  1.],
           [38.,  0.]])
    """
    n_samples = _check_n_samples(n_samples)
    image_size, _ = check_image_params(image_size, "rgb")
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False, got {overwrite!r}.")
    rng = _check_random_state(random_state)
    folder = pathlib.Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"path {str(folder)!r} is a file; pass the path of a folder to write the "
            "images into (it is created if missing)."
        )
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise ValueError(
                f"the folder {str(folder)!r} is not empty; pass an empty or new folder, "
                "or overwrite=True to delete the *.jpg.chip.jpg files in it first."
            )
        for old in folder.glob("*" + _UTKFACE_SUFFIX):
            if old.is_file():
                old.unlink()
    folder.mkdir(parents=True, exist_ok=True)

    ages, genders, races, seeds = _sample_labels(n_samples, rng)
    canvas = _canvas_size(image_size)
    paths = []
    for i in range(n_samples):
        face = _draw_face(ages[i], genders[i], races[i], np.random.default_rng(seeds[i]), canvas)
        if face.size != (image_size, image_size):
            face = face.resize((image_size, image_size), Image.Resampling.BILINEAR)
        name = f"{ages[i]}_{genders[i]}_{races[i]}_{_DATE_PREFIX}{i:09d}{_UTKFACE_SUFFIX}"
        file = folder / name
        face.save(file, format="JPEG", quality=90)
        paths.append(file)
    return paths


def _check_n_samples(n_samples) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
        raise ValueError(
            f"n_samples must be a positive integer (the number of faces), got {n_samples!r}."
        )
    if n_samples >= 10**9:
        raise ValueError(
            f"n_samples must be below 1,000,000,000 so that every file name is unique, "
            f"got {n_samples!r}."
        )
    return int(n_samples)


def _check_random_state(random_state):
    """Return a RandomState or Generator; both offer the ``random`` and ``choice`` used here."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    try:
        return check_random_state(random_state)
    except ValueError:
        raise ValueError(
            "random_state must be None, an int, a numpy.random.RandomState or a "
            f"numpy.random.Generator, got {random_state!r}."
        ) from None


def _canvas_size(image_size: int) -> int:
    # Small images are drawn at twice their size, and at least 64 pixels, so
    # that resizing smooths Pillow's aliased edges; large ones at their size.
    return image_size if image_size >= 128 else max(64, 2 * image_size)


def _age_weights() -> np.ndarray:
    ages = np.arange(_MIN_AGE, _MAX_AGE + 1, dtype=float)
    # Shaped like UTKFace: a peak in the late twenties, a shoulder in the
    # fifties, many babies and toddlers, and a long tail of elderly people.
    weights = (
        3.0 * np.exp(-0.5 * ((ages - 28) / 7.0) ** 2)
        + 1.0 * np.exp(-0.5 * ((ages - 52) / 12.0) ** 2)
        + 1.5 * np.exp(-0.5 * ((ages - 1) / 3.0) ** 2)
        + 0.25
    )
    return weights / weights.sum()


def _sample_labels(n_samples: int, rng):
    """Draw ages, genders, race codes and one seed per face from ``rng``."""
    ages = rng.choice(np.arange(_MIN_AGE, _MAX_AGE + 1), size=n_samples, p=_age_weights())
    genders = (rng.random(n_samples) < 0.5).astype(int)
    races = rng.choice(len(_RACE_WEIGHTS), size=n_samples, p=_RACE_WEIGHTS)
    # One seed per face, so that a face does not depend on how many random
    # numbers the faces before it used (they vary with the canvas size).
    seeds = rng.choice(2**31 - 1, size=n_samples)
    return ages.astype(int), genders, races.astype(int), seeds


def _clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


def _rgb(values) -> tuple[int, int, int]:
    return tuple(min(255, max(0, int(round(v)))) for v in values)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return _rgb((1.0 - t) * u + t * v for u, v in zip(a, b))


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return _rgb(v * factor for v in colour)


def _arc(cx, cy, rx, ry, start: float, end: float, n: int = 16) -> list[tuple[float, float]]:
    """Points on an ellipse from angle ``start`` to ``end`` (radians, clockwise from 3 o'clock)."""
    t = np.linspace(start, end, n)
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


def _cap(cx, cy, rx, ry, y_cut: float, below: bool) -> list[tuple[float, float]]:
    """Outline of the part of an ellipse below (or above) the line ``y = y_cut``."""
    phi = math.asin(min(1.0, max(-1.0, (y_cut - cy) / ry)))
    if below:
        return _arc(cx, cy, rx, ry, phi, math.pi - phi, 24)
    return _arc(cx, cy, rx, ry, math.pi - phi, 2 * math.pi + phi, 24)


class _Painter:
    """ImageDraw in canvas units: (0, 0) is the top left corner, (1, 1) the bottom right."""

    def __init__(self, image: Image.Image):
        self.size = float(image.size[0])
        self.draw = ImageDraw.Draw(image)

    def _points(self, points):
        return [(x * self.size, y * self.size) for x, y in points]

    def width(self, w: float) -> int:
        return max(1, int(round(w * self.size)))

    def ellipse(self, cx, cy, rx, ry, colour):
        s = self.size
        box = [(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s]
        self.draw.ellipse(box, fill=colour)

    def rectangle(self, x0, y0, x1, y1, colour):
        s = self.size
        self.draw.rectangle([x0 * s, y0 * s, x1 * s, y1 * s], fill=colour)

    # Pillow's chord() fills wrong rows for some angles (seen with Pillow 13),
    # so filled shapes are polygons through computed points.
    def polygon(self, points, colour):
        self.draw.polygon(self._points(points), fill=colour)

    def line(self, points, colour, w: float):
        self.draw.line(self._points(points), fill=colour, width=self.width(w), joint="curve")


def _draw_face(
    age: int, gender: int, race: int, rng: np.random.Generator, canvas: int
) -> Image.Image:
    """Draw one face as a ``canvas`` x ``canvas`` RGB image; lengths are in canvas units."""
    male = gender == 0
    # child is 1 for a toddler and 0 from 18 on; old is 0 until the early
    # twenties and 1 at 90, grey 0 until the mid-forties and 1 by the
    # mid-seventies. The onsets vary a little from person to person.
    child = _clip01((18.0 - age) / 16.0)
    baby = _clip01((3.0 - age) / 2.0)
    old = _clip01((age - 22.0 + rng.normal(0.0, 2.5)) / 66.0)
    grey = _clip01((age - 45.0 + rng.normal(0.0, 4.0)) / 30.0)

    # Colours.
    skin = _rgb(_SKIN_TONES[race] * rng.uniform(0.9, 1.08) + rng.normal(0.0, 6.0, 3))
    names, probs = _HAIR_BY_RACE[race]
    hair_name = names[rng.choice(len(names), p=probs)]
    hair_base = _shade(_HAIR_COLOURS[hair_name], rng.uniform(0.85, 1.15))
    hair = _mix(hair_base, _WHITE_HAIR, grey)
    brow = _mix(hair_base, _WHITE_HAIR, 0.7 * grey)
    background = _rgb(rng.uniform(25.0, 235.0) + rng.normal(0.0, 25.0, 3))
    clothes = _rgb(rng.uniform(0.0, 255.0, 3))
    line = _shade(skin, 1.0 - 0.5 * min(1.0, 0.25 + old))

    # Geometry. Children's heads are rounder, with large eyes set low and a
    # small nose and mouth; men's heads are a little wider.
    cx, cy = 0.5, 0.5
    rx = 0.285 + 0.02 * child + (0.018 if male else 0.0) * (1.0 - child)
    ry = 0.38 - 0.075 * child
    ey = cy + ry * (-0.04 + 0.2 * child)
    ex = rx * (0.40 - 0.02 * child)
    er = rx * (0.13 + 0.07 * child)
    eye_h = er * (0.55 + 0.2 * child - 0.12 * old)
    brow_y = ey - eye_h - ry * (0.09 - 0.02 * child)
    nose_y = ey + ry * (0.36 - 0.14 * child)
    nose_w = rx * (0.16 - 0.04 * child)
    mouth_y = nose_y + ry * (0.19 - 0.04 * child)
    mouth_w = rx * (0.33 - 0.08 * child)
    lip_h = ry * (0.055 - 0.012 * child - 0.02 * old)

    # Hairline: babies have little hair; many men lose it from the forehead
    # back, some down to a bald crown; some girls and women wear a fringe.
    hairline = cy - ry * (0.62 + 0.1 * baby)
    bald = 0.0
    if male:
        bald = 1.4 * rng.random() * _clip01((age - 28.0) / 40.0)
        hairline -= ry * 0.3 * min(bald, 1.0)
    elif child < 1.0 and rng.random() < 0.4:
        hairline += ry * 0.15

    image = Image.new("RGB", (canvas, canvas), background)
    paint = _Painter(image)

    # Clothes and neck, under the head.
    paint.ellipse(cx, 1.12, 0.5, 0.2, clothes)
    paint.rectangle(cx - rx * 0.5, cy, cx + rx * 0.5, 1.02, _shade(skin, 0.88))
    if age >= 50:
        for k in range(1 + int(3 * old)):
            y = cy + ry + 0.03 * k
            paint.line(_arc(cx, y, rx * 0.45, 0.04, 0.7, 2.44), line, 0.006)

    # Women's long hair falls behind the head and down the sides; a few wear
    # it at chin length.
    if not male and baby < 1.0:
        short = child > 0.8 or rng.random() < 0.12
        bottom = cy + ry * (0.55 if short else rng.uniform(1.0, 1.7))
        spread = rx + rng.uniform(0.07, 0.13)
        paint.ellipse(cx, cy - ry * 0.3, spread, ry * 0.85, hair)
        paint.rectangle(cx - spread, cy - ry * 0.3, cx + spread, bottom, hair)

    for side in (-1, 1):
        ear_x = cx + side * rx * 0.98
        paint.ellipse(ear_x, ey + ry * 0.12, rx * 0.12, ry * 0.17, _shade(skin, 0.93))

    # Hair over the skull, or only at the sides of a bald crown.
    if bald < 0.75:
        cap = rx + (0.02 if male else 0.035)
        cap_top = cy - ry - (0.035 if male else 0.05) * (1.0 - baby)
        cap_bottom = cy + ry * 0.2
        paint.ellipse(cx, (cap_top + cap_bottom) / 2, cap, (cap_bottom - cap_top) / 2, hair)
    elif bald < 1.2:
        for side in (-1, 1):
            paint.ellipse(cx + side * rx * 0.85, cy - ry * 0.25, rx * 0.25, ry * 0.35, hair)

    # The face; a man's jaw is squarer.
    paint.ellipse(cx, cy, rx, ry, skin)
    if male and child < 1.0:
        jaw = rx * (0.86 - 0.2 * child)
        paint.polygon(
            [
                (cx - jaw, cy + ry * 0.15),
                (cx - jaw * 0.72, cy + ry * 0.93),
                (cx + jaw * 0.72, cy + ry * 0.93),
                (cx + jaw, cy + ry * 0.15),
            ],
            skin,
        )

    # Hair over the forehead down to the hairline; women's also frames the
    # face down to the cheeks.
    if bald < 0.75 and baby < 1.0:
        paint.polygon(_cap(cx, cy, rx * 1.01, ry * 1.01, hairline, below=False), hair)
        if not male:
            top = math.pi - math.asin(max(-1.0, (hairline - cy) / ry))
            low = math.pi - math.asin(rng.uniform(0.1, 0.4))
            outer = _arc(cx, cy, rx * 1.01, ry * 1.01, top, low, 12)
            inner = _arc(cx, cy, rx * 0.84, ry * 1.01, low, top, 12)
            lock = outer + inner
            paint.polygon(lock, hair)
            paint.polygon([(2 * cx - x, y) for x, y in lock], hair)

    # Forehead lines, more and deeper with age, where the hair leaves room.
    if old > 0.05:
        for k in range(1 + int(3.5 * old)):
            y = brow_y - ry * (0.1 + 0.09 * k)
            if y > hairline + ry * 0.05 or bald >= 0.75:
                half = rx * (0.5 - 0.05 * k)
                arc = _arc(cx, y + ry * 0.06, half, ry * 0.08, 3.58, 5.85)
                paint.line(arc, line, 0.005 + 0.007 * old)

    # Eyebrows, thicker on men.
    brow_w = (0.016 if male else 0.009) * (1.0 - 0.3 * child)
    for side in (-1, 1):
        x0 = cx + side * (ex - er * 1.1)
        x1 = cx + side * (ex + er * 1.2)
        arch = [(x0, brow_y + 0.004), ((x0 + x1) / 2, brow_y - 0.008), (x1, brow_y + 0.006)]
        paint.line(arch, brow, brow_w)

    # Eyes, with eyeliner on most women; under-eye lines and crow's feet
    # with age.
    iris = _IRIS_COLOURS[rng.choice(len(_IRIS_COLOURS))]
    eyeliner = not male and age >= 14 and rng.random() < 0.8
    wrinkle_w = 0.004 + 0.006 * old
    for side in (-1, 1):
        x = cx + side * ex
        paint.ellipse(x, ey, er, eye_h, (240, 238, 232))
        iris_r = min(er * 0.55, eye_h * 1.05)
        paint.ellipse(x, ey, iris_r, iris_r, iris)
        paint.ellipse(x, ey, iris_r * 0.45, iris_r * 0.45, (10, 10, 10))
        if eyeliner:
            arc = _arc(x, ey, er * 1.08, eye_h * 1.1, math.pi + 0.15, 2 * math.pi - 0.15)
            paint.line(arc, (25, 18, 18), 0.009)
        if old > 0.12:
            paint.line(_arc(x, ey + eye_h * 0.6, er, eye_h * 1.1, 0.35, 2.79), line, wrinkle_w)
        if old > 0.2:
            x_out = x + side * er * 1.1
            reach = side * er * (0.5 + 0.5 * old)
            for dy in (-0.5, 0.0, 0.5):
                crease = [(x_out, ey + dy * eye_h), (x_out + reach, ey + 2.5 * dy * eye_h)]
                paint.line(crease, line, wrinkle_w)

    # Nose.
    bridge = [(cx + 0.004, ey + eye_h), (cx + nose_w * 0.3, nose_y - 0.01)]
    paint.line(bridge, _shade(skin, 0.9), 0.006)
    nostrils = _arc(cx, nose_y - ry * 0.03, nose_w, ry * 0.05, 0.17, 2.97)
    paint.line(nostrils, _shade(skin, 0.8), 0.007)

    # Nasolabial folds from the twenties, deepening with age; marionette
    # lines later on.
    if old > 0.08:
        for side in (-1, 1):
            fold = [
                (cx + side * (nose_w + 0.012), nose_y - ry * 0.04),
                (cx + side * (mouth_w + 0.025), nose_y + ry * 0.1),
                (cx + side * (mouth_w + 0.03), mouth_y + ry * 0.06 * (1.0 + old)),
            ]
            paint.line(fold, line, 0.004 + 0.009 * old)
            if old > 0.45:
                x = cx + side * mouth_w
                marionette = [(x, mouth_y + lip_h), (x + side * 0.01, mouth_y + ry * 0.25)]
                paint.line(marionette, line, wrinkle_w)

    # Stubble, a full beard or a moustache on many adult men; they grey with
    # the hair.
    if male and age >= 16 and rng.random() < 0.5 * min(1.0, (age - 15) / 12.0):
        kind = rng.choice(3, p=[0.45, 0.35, 0.2])  # stubble, full beard, moustache
        if kind != 2:
            beard = hair if kind == 1 else _mix(skin, hair, 0.45)
            paint.polygon(_cap(cx, cy, rx * 0.98, ry, nose_y + ry * 0.02, below=True), beard)
        paint.ellipse(cx, (nose_y + mouth_y) / 2 + 0.005, mouth_w * 1.1, ry * 0.06, hair)

    # Mouth; many women wear lipstick, which is also darker in grayscale.
    if not male and age >= 15 and rng.random() < 0.65:
        lips = _rgb(np.array([185.0, 45.0, 70.0]) + rng.normal(0.0, 15.0, 3))
    else:
        lips = _mix(skin, (180, 80, 80), 0.35)
    paint.polygon(_cap(cx, mouth_y, mouth_w, lip_h * 1.6, mouth_y, below=True), lips)
    paint.polygon(_cap(cx, mouth_y, mouth_w, lip_h, mouth_y, below=False), lips)
    paint.line([(cx - mouth_w, mouth_y), (cx + mouth_w, mouth_y)], _shade(lips, 0.6), 0.004)

    # Age spots on the elderly.
    if age > 60:
        for _ in range(rng.poisson((age - 60) / 6.0)):
            r = rng.uniform(0.006, 0.014)
            x = cx + rng.uniform(-0.7, 0.7) * rx
            y = cy + rng.uniform(-0.7, 0.1) * ry
            paint.ellipse(x, y, r, r, _shade(skin, 0.78))

    image = _jitter_pose(image, rng, background)
    return _light(image, rng)


def _jitter_pose(image: Image.Image, rng: np.random.Generator, background) -> Image.Image:
    """Shift, scale and rotate ``image`` a little about its centre."""
    size = float(image.size[0])
    angle = math.radians(rng.uniform(-8.0, 8.0))
    scale = rng.uniform(0.92, 1.08)
    tx, ty = rng.uniform(-0.04, 0.04, 2) * size
    # AFFINE maps each output pixel back to the input pixel it samples.
    a = math.cos(angle) / scale
    b = math.sin(angle) / scale
    c = size / 2
    coeffs = (a, b, c - a * (c + tx) - b * (c + ty), -b, a, c + b * (c + tx) - a * (c + ty))
    return image.transform(
        image.size,
        Image.Transform.AFFINE,
        coeffs,
        resample=Image.Resampling.BILINEAR,
        fillcolor=background,
    )


def _light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Apply a random brightness, a linear lighting gradient and mild noise."""
    size = image.size[0]
    theta = rng.uniform(0.0, 2 * math.pi)
    ramp = np.arange(size, dtype=np.float32) / size - 0.5
    gradient = rng.uniform(0.8, 1.15) + rng.uniform(0.0, 0.45) * (
        math.cos(theta) * ramp[None, :] + math.sin(theta) * ramp[:, None]
    )
    # Luminance noise only: a third of the random numbers colour noise needs.
    noise = rng.standard_normal((size, size), dtype=np.float32) * rng.uniform(1.0, 5.0)
    pixels = np.asarray(image) * gradient[:, :, None]
    pixels += noise[:, :, None]
    np.clip(pixels, 0, 255, out=pixels)
    return Image.fromarray(pixels.astype(np.uint8))

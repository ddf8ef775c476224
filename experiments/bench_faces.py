"""Face detection and alignment: real photos (scenes), speed, detection rate, the template, tight crops.

Subcommands:

- ``scenes`` (the default): the shipped model (or ``--model DIR``) on photos built from the test
  split of crop_part1, measured in one run and printed side by side (see
  "Scenes" below).
- ``speed``: ms per image of the ``mtcnn`` package as shipped against
  skface.faces.FaceDetector with each lever added, interleaved in the same
  run, on three images built from tests/data/astronaut.jpg (a 200x200 crop,
  a 640x480 photo with one face, a 1280x900 photo with six faces).
- ``detection``: share of UTKFace crops where each detector finds a face.
- ``template``: the five landmarks' median (and spread) on training crops of
  crop_part1, the figures of src/skface/faces/TEMPLATE.md.
- ``occlusion``: share of faces found, age MAE and gender accuracy when part
  of the face is covered (sunglasses, a face mask, half the face), each test
  crop pasted into a 640x480 photo; see "Occlusion" below.
- ``tight-crops``: the pretrained model's age MAE and gender accuracy on the
  test crops of crop_part1 given directly, detected and aligned, and through
  the rule that keeps tight crops as they are.

The training/test split is the project's: ``stratified_split`` (test_size=0.2,
random_state=0) over the files as ``load_utkface`` orders them.

Scenes
------
Each scene pastes 1 to ``--max-faces`` test crops (drawn without replacement,
seeded) into a 4:3 photo (a quarter of them upright 3:4) whose longer side is
640 to 1600 px, on one of five backgrounds: a plain colour, pixel noise, a
linear gradient, smooth colour clouds, or random rectangles, ellipses and
lines. Crops never overlap. The scene is saved as a JPEG (quality 90) and read
back as a photo would be.

*Face size* means the face, not the pasted crop: the side of the box that the
face detector draws around it. On 300 crops of crop_part1 (200x200, drawn with seed 1),
``FaceDetector``'s median box is x 14.6, y 0, 165 wide, 192 tall (the top is
clipped: the face fills the crop), so the face is 0.825 of the crop's side
(the eyes are 0.39 apart, the "about 40%" one may read elsewhere), and a face
of ``s`` px is a crop of ``s / 0.825`` px. Face sizes are drawn log-uniformly
in ``--face-sizes`` (60 to 300 px). The true face region of a pasted crop is
that median box scaled to the crop.

A true face counts as found when one detected box overlaps it with IoU >= 0.3
(each detected box matched to at most one face, best overlap first); the table
also gives the laxer rule "a detected box's centre lies in the true region".
Detected boxes matched to no face are false positives. Per-face age MAE and
gender accuracy compare the photo path (``predict_rows`` on the scene, each
found face taking the prediction of its matched box) with the same faces given
as crops (``predict_rows(..., crops=True)`` on the 200x200 test files): the gap
is the cost of detection and alignment. A third figure, the same crops
detected and always warped to the template (``tight_crop_tolerance=None``),
separates what the warp alone costs from what the photo adds (resampling,
JPEG, detection on a downscaled copy); it also tells which faces the detector
misses on their own crop already. Every ``min_face_size`` variant runs on
every scene, interleaved, so their figures and milliseconds are comparable.
"Floor" variants emulate a parameter skface lacks: the smallest face looked for
is min(first fraction x shorter side, N px), i.e. ``min_face_size`` set per
image to min(fraction, N / shorter side).

Then the tight-crop path (the test crops through ``load_pretrained().predict``
and through ``pipeline[1:]``, which skips the face step), and timings: p50 and
p90 over ``--rounds`` rounds that go through every task in turn (the detector
alone, shipped ``mtcnn`` against ``FaceDetector``; a 640x480 photo with one
face through ``predict``; a 1280x900 photo with six faces through
``predict_rows``; a 200x200 crop with and without the face step; the same
photo and crop over HTTP through ``mlflow models serve`` on loopback; and each
``min_face_size`` variant on both photos).

Occlusion
---------
``--samples`` test crops (seed 0), each pasted once per cover at 200 px (a
face of about 165 px) at a random spot of a 640x480 photo on a plain or
gradient background, with a flat grey rectangle drawn over it first, in the
crop's own pixels (UTKFace crops put the eyes at y 58 and the mouth at y 136
of 200: ``TEMPLATE``): ``sunglasses`` covers x 25-175, y 35-80; ``face mask``
x 30-170, y 95-200 (nose, mouth, chin); ``half face`` the left half. A face
counts as found when a detected box overlaps its true region with IoU >= 0.3;
its age and gender are those of that box. The same crops without a cover are
the baseline of the same run. Profiles cannot be built this way and are not
measured.

Full run (about 4 minutes on 2 cores):
``python experiments/bench_faces.py scenes --data ../shared/data/utkface-crop_part1``.
Dry run: ``python experiments/bench_faces.py --data synthetic --scenes 3 --serve false``.
"""

import argparse
import contextlib
import io
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from skface.cli.options import boolean, whole_number
from skface.quiet import import_tensorflow_quietly

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "tests" / "data" / "astronaut.jpg"
UTKFACE = REPO.parent / "shared" / "data" / "utkface-crop_part1"

#: The face inside a 200x200 UTKFace crop, as fractions of the crop's side: the median box that
#: FaceDetector draws on 300 crops of crop_part1, seed 1 (x 14.6, y 0, w 165, h 192 px).
FACE_IN_CROP = (0.073, 0.0, 0.825, 0.96)
BACKGROUNDS = ("plain", "noise", "gradient", "clouds", "shapes")
#: Bins of face side / the photo's shorter side: where min_face_size=0.1 starts to bite.
RELATIVE_BINS = ((0.0, 0.07), (0.07, 0.1), (0.1, 2.0))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("command", nargs="?", default="scenes",
                        choices=("scenes", "speed", "detection", "template", "tight-crops", "occlusion"),
                        help="what to measure")
    parser.add_argument("--data", default=str(UTKFACE),
                        help="folder of UTKFace crop_part1 images; 'synthetic' (scenes only) for a dry run on "
                             "skface.make_synthetic_faces")
    parser.add_argument("--n-synthetic", type=whole_number, default=60, help="scenes: faces made with --data synthetic")
    parser.add_argument("--rounds", type=whole_number, default=30,
                        help="speed, scenes: timed rounds, each through every variant in turn")
    parser.add_argument("--scenes", type=whole_number, default=300, help="scenes: photos built from the test split")
    parser.add_argument("--max-faces", type=whole_number, default=4, help="scenes: most faces in one photo")
    parser.add_argument("--face-sizes", type=_pair, default=(60, 300),
                        help="scenes: smallest,largest face side in px (the face, not the crop), log-uniform")
    parser.add_argument("--min-face-sizes", type=_floats, default=(0.1, 0.07, 0.05, 0.04),
                        help="scenes: FaceAligner min_face_size fractions compared; the first is the baseline "
                             "(the library default) and the base of the floors")
    parser.add_argument("--min-face-floors", type=_floats, default=(56, 40),
                        help="scenes: min_face_pixels floors compared, with the first fraction: the smallest face is "
                             "min(fraction x shorter side, N px)")
    parser.add_argument("--crops", type=whole_number, default=0,
                        help="scenes: test crops through the tight-crop paths (0: the whole test split)")
    parser.add_argument("--serve", type=boolean, nargs="?", const=True, default=True,
                        help="scenes: also time requests to `mlflow models serve` (starting it takes a minute)")
    parser.add_argument("--shipped-mtcnn", type=boolean, nargs="?", const=True, default=True,
                        help="scenes: also time the `mtcnn` package as shipped on the 640x480 photo")
    parser.add_argument("--model", default=None,
                        help="scenes, tight-crops: a folder written by save_pretrained to measure instead of the "
                             "shipped model")
    parser.add_argument("--seed", type=whole_number, default=0, help="scenes: seed of the scenes")
    parser.add_argument("--samples", type=whole_number, default=2000,
                        help="detection/template: training crops drawn (seed 0); occlusion: test crops")
    parser.add_argument("--max-scale-change", type=float, default=0.15,
                        help="tight-crops: |log scale| under which a face counts as already aligned")
    parser.add_argument("--max-rotation", type=float, default=10.0,
                        help="tight-crops: rotation in degrees under which a face counts as already aligned")
    parser.add_argument("--max-shift", type=float, default=12.0,
                        help="tight-crops: shift in crop pixels under which a face counts as already aligned")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.scenes < 1 or args.max_faces < 1:
        parser.error("--rounds, --scenes and --max-faces must be at least 1")
    if not 12 <= args.face_sizes[0] <= args.face_sizes[1]:
        parser.error(f"--face-sizes must be smallest,largest with 12 <= smallest <= largest, got {args.face_sizes}")
    if not all(0 < f <= 1 for f in args.min_face_sizes):
        parser.error(f"--min-face-sizes are fractions in (0, 1], got {args.min_face_sizes}")
    if args.data == "synthetic" and args.command != "scenes":
        parser.error(f"--data synthetic is for the scenes dry run, not {args.command}")
    return args


def _floats(text) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _pair(text) -> tuple[int, int]:
    values = _floats(text)
    if len(values) != 2 or not all(v.is_integer() for v in values):
        raise argparse.ArgumentTypeError(f"expected two whole numbers as smallest,largest, got {text!r}")
    return int(values[0]), int(values[1])


# --------------------------------------------------------------------------- images

def bench_images() -> dict[str, np.ndarray]:
    astronaut = Image.open(ASTRONAUT).convert("RGB")
    crop = np.asarray(astronaut.crop((138, 30, 310, 202)).resize((200, 200), Image.Resampling.BILINEAR))
    portrait = np.asarray(astronaut.resize((480, 480), Image.Resampling.BILINEAR))
    photo = np.pad(portrait, ((0, 0), (80, 80), (0, 0)), mode="edge")
    group = np.full((900, 1280, 3), 96, dtype=np.uint8)
    tile = np.asarray(astronaut.resize((420, 420), Image.Resampling.BILINEAR))
    for top in (10, 470):
        for left in (10, 430, 850):
            group[top:top + 420, left:left + 420] = tile
    return {"crop 200x200": crop, "photo 640x480, 1 face": photo, "group 1280x900, 6 faces": group}


# --------------------------------------------------------------------------- speed

def speed(args) -> None:
    from mtcnn import MTCNN

    from skface.faces import FaceDetector
    from skface.network.measure import cpu_name

    images = bench_images()
    shipped = MTCNN()
    variants = {
        "mtcnn 1.0 as shipped (eager, 20 px min face)": lambda image: shipped.detect_faces(image),
        "compiled+batched, same pyramid, full res": lambda image: FaceDetector(
            min_face_size=20 / min(image.shape[:2]), detection_side=None).detect(image),
        "+ min face 0.1 of shorter side": lambda image: FaceDetector(detection_side=None).detect(image),
        "+ search on <=480 px copy (default)": lambda image: FaceDetector().detect(image),
    }
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    for name, image in images.items():
        times = {variant: [] for variant in variants}
        found = {variant: len(run(image)) for variant, run in variants.items()}  # warm-up, traces
        for _ in range(args.rounds):
            for variant, run in variants.items():
                start = time.perf_counter()
                run(image)
                times[variant].append(time.perf_counter() - start)
        print(f"\n{name}")
        for variant, values in times.items():
            print(f"  {variant:48s} p50 {1000 * statistics.median(values):7.1f} ms  "
                  f"p90 {1000 * np.percentile(values, 90):7.1f} ms  faces {found[variant]}")


# --------------------------------------------------------------------------- UTKFace

def split(data):
    from skface import load_utkface
    from skface.evaluation import stratified_split

    data = Path(data)
    faces = load_utkface(data, image_size=80, color="rgb", verbose=False)
    train, test, y_train, y_test = stratified_split(np.arange(len(faces.target)), faces.target,
                                                    test_size=0.2, random_state=0)
    paths = np.array([str(data / name) for name in faces.filenames])
    return paths[train], paths[test], y_train, y_test, faces.images[test]


def training_sample(args):
    train, _, _, _, _ = split(args.data)
    rng = np.random.default_rng(0)
    return sorted(rng.choice(train, size=min(args.samples, len(train)), replace=False))


def detection(args) -> None:
    from mtcnn import MTCNN

    from skface.faces import FaceDetector, load_rgb

    paths = training_sample(args)
    shipped, ours = MTCNN(), FaceDetector()
    hits = {"mtcnn 1.0 as shipped": 0, "skface FaceDetector": 0}
    both_missed = []
    for path in paths:
        image = load_rgb(path)
        a, b = len(shipped.detect_faces(image)) > 0, len(ours.detect(image)) > 0
        hits["mtcnn 1.0 as shipped"] += a
        hits["skface FaceDetector"] += b
        if not b:
            both_missed.append((Path(path).name, a))
    for name, count in hits.items():
        print(f"{name:24s} {count}/{len(paths)} = {100 * count / len(paths):.2f} %")
    print("missed by FaceDetector (file, found by shipped mtcnn):")
    for name, found in both_missed:
        print(f"  {name}  {found}")


def template(args) -> None:
    from skface.faces import LANDMARK_NAMES, FaceDetector, load_rgb
    from skface.faces.alignment import TEMPLATE, template_offset

    paths = training_sample(args)
    detector = FaceDetector()
    points, missed, several, offsets = [], [], 0, []
    for path in paths:
        faces = detector.detect(load_rgb(path))
        if not faces:
            missed.append(Path(path).name)
            continue
        several += len(faces) > 1
        points.append(faces[0].landmarks)
        offsets.append(template_offset(faces[0].landmarks, (200, 200)))
    points = np.array(points)
    print(f"crops: {len(paths)} training crops of crop_part1 (seed 0); faces found in {len(points)} "
          f"({100 * len(points) / len(paths):.2f} %), more than one face in {several}")
    print("landmark      median x  median y   IQR x  IQR y   p5-p95 x      p5-p95 y")
    for index, name in enumerate(LANDMARK_NAMES):
        x, y = points[:, index, 0], points[:, index, 1]
        print(f"{name:12s} {np.median(x):8.2f} {np.median(y):9.2f} {_iqr(x):7.2f} {_iqr(y):6.2f}   "
              f"{np.percentile(x, 5):5.1f}-{np.percentile(x, 95):5.1f}   {np.percentile(y, 5):5.1f}-"
              f"{np.percentile(y, 95):5.1f}")
    print("TEMPLATE = np.array([\n" + "".join(
        f"    [{np.median(points[:, i, 0]):.2f}, {np.median(points[:, i, 1]):.2f}],\n" for i in range(5)) + "])")
    print("shipped TEMPLATE:", TEMPLATE.tolist())
    offsets = np.array(offsets)
    for column, name in enumerate(("|log scale|", "rotation deg", "shift px")):
        values = offsets[:, column]
        print(f"offset from the template, {name:13s} p50 {np.median(values):6.3f}  p90 "
              f"{np.percentile(values, 90):6.3f}  p95 {np.percentile(values, 95):6.3f}  p99 "
              f"{np.percentile(values, 99):6.3f}")
    print(f"missed ({len(missed)}):", " ".join(missed))


def _iqr(values) -> float:
    return float(np.subtract(*np.percentile(values, [75, 25])))


def tight_crops(args) -> None:
    from skface import ImagePreprocessor, load_pretrained
    from skface.faces import FaceDetector, align_face, load_rgb
    from skface.faces.alignment import template_offset

    _, paths, _, y_test, direct = split(args.data)
    pipeline = load_pretrained(args.model)
    model = pipeline.named_steps["model"]
    preprocess = ImagePreprocessor(image_size=80, color="rgb")
    detector = FaceDetector()
    aligned, ruled, missed, kept = [], [], 0, 0
    limits = (args.max_scale_change, args.max_rotation, args.max_shift)
    for path in paths:
        image = load_rgb(path)
        faces = detector.detect(image)
        if not faces:
            missed += 1
            aligned.append(image)
            ruled.append(image)
            continue
        warped = align_face(image, faces[0].landmarks)
        aligned.append(warped)
        if all(value <= limit for value, limit in zip(template_offset(faces[0].landmarks, image.shape[:2]), limits)):
            kept += 1
            ruled.append(image)
        else:
            ruled.append(warped)
    print(f"test crops: {len(paths)}; no face found in {missed} (kept as they are); "
          f"rule {limits} kept {kept} of {len(paths) - missed} detected faces unwarped")
    print("input                               age MAE   gender acc   n")
    for name, images in (("(a) crops as given", direct),
                         ("(b) detect + align every crop", preprocess.transform(aligned)),
                         ("(c) align only faces off template", preprocess.transform(ruled))):
        predicted = model.predict(images)
        mae = np.mean(np.abs(predicted[:, 0] - y_test[:, 0]))
        accuracy = np.mean(predicted[:, 1] == y_test[:, 1])
        print(f"{name:35s} {mae:7.3f}   {100 * accuracy:8.2f} %   {len(images)}")


# --------------------------------------------------------------------------- occlusion

#: Covers drawn over a 200x200 crop before it is pasted: ``(x0, y0, x1, y1)`` in the crop's pixels, or None.
COVERS = {"none": None, "sunglasses": (25, 35, 175, 80), "face mask": (30, 95, 170, 200), "half face": (0, 0, 100, 200)}


def occlusion(args) -> None:
    from tqdm.auto import tqdm

    from skface import load_pretrained
    from skface.faces import load_rgb
    from skface.network.measure import cpu_name
    from skface.network.pipeline import predict_rows

    _, paths, _, y_test, _ = split(args.data)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(paths), size=min(args.samples, len(paths)), replace=False)
    pipeline = load_pretrained(args.model)
    side = 200
    tally = {name: {"found": 0, "errors": [], "correct": []} for name in COVERS}
    for index in tqdm(picks, desc="occlusion", unit="crop", dynamic_ncols=True):
        crop = load_rgb(paths[index])
        kind = ("plain", "gradient")[int(rng.integers(2))]
        background = make_background(kind, 480, 640, rng)
        x, y = int(rng.integers(0, 640 - side + 1)), int(rng.integers(0, 480 - side + 1))
        truth = face_region(x, y, side)
        for name, cover in COVERS.items():
            covered = crop.copy()
            if cover is not None:
                x0, y0, x1, y1 = cover
                covered[y0:y1, x0:x1] = 128
            row = predict_rows(pipeline, [compose(background, [covered], [(x, y, side)])])[0]
            faces = row["faces"] or []
            matched = match_faces([truth], [face["box"] for face in faces])
            if 0 in matched:
                face = faces[matched[0]]
                tally[name]["found"] += 1
                tally[name]["errors"].append(abs(face["age"] - y_test[index, 0]))
                tally[name]["correct"].append(int(face["gender"] == "female") == y_test[index, 1])
    print(f"\nCPU: {cpu_name()}, {os.cpu_count()} cores; {len(picks)} test crops of {args.data}, each in a "
          f"640x480 photo at {side} px, under each cover")
    print(f"{'cover':12s} {'found':>8s} {'age MAE':>9s} {'gender acc':>11s}   (of the faces found)")
    for name, counts in tally.items():
        found = counts["found"] / len(picks)
        mae = np.mean(counts["errors"]) if counts["errors"] else float("nan")
        accuracy = 100 * np.mean(counts["correct"]) if counts["correct"] else float("nan")
        print(f"{name:12s} {100 * found:7.1f}% {mae:9.2f} {accuracy:10.1f}%")


# --------------------------------------------------------------------------- scenes: building

@dataclass
class TrueFace:
    """One pasted test crop: its index in the test split, face region ``(x, y, w, h)``, face side and labels."""

    index: int
    box: tuple[float, float, float, float]
    size: float
    age: float
    gender: int


@dataclass
class Scene:
    jpeg: bytes
    shape: tuple[int, int]
    background: str
    faces: list[TrueFace] = field(default_factory=list)


def make_background(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB background without faces: one of :data:`BACKGROUNDS`."""
    if kind == "plain":
        return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (height, width, 3)).copy()
    if kind == "noise":
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:height, 0:width]
        ramp = x * np.cos(angle) + y * np.sin(angle)
        ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1.0)
        start, end = rng.integers(0, 256, (2, 3))
        return (start + (end - start) * ramp[..., None]).astype(np.uint8)
    if kind == "clouds":
        small = rng.integers(0, 256, (max(2, height // 60), max(2, width // 60), 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))
    if kind == "shapes":
        from PIL import ImageDraw

        image = Image.fromarray(make_background("plain", height, width, rng))
        draw = ImageDraw.Draw(image)
        for _ in range(40):
            x0, x1 = sorted(int(v) for v in rng.integers(0, width, 2))
            y0, y1 = sorted(int(v) for v in rng.integers(0, height, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = rng.integers(3)
            if shape == 0:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            elif shape == 1:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            else:
                draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 12)))
        return np.asarray(image)
    raise ValueError(f"unknown background {kind!r}; choose from {', '.join(BACKGROUNDS)}")


def random_layout(rng: np.random.Generator, height: int, width: int, n_faces: int, face_sizes: tuple[int, int],
                  *, gap: int = 4, tries: int = 100) -> list[tuple[int, int, int]]:
    """Up to ``n_faces`` non-overlapping squares ``(x, y, side)`` for crops whose faces are log-uniform in
    ``face_sizes``; a face that finds no room shrinks by 20% steps down to the smallest size, else is dropped."""
    placed = []
    smallest, largest = face_sizes
    for _ in range(n_faces):
        face = float(np.exp(rng.uniform(np.log(smallest), np.log(largest))))
        while True:
            side = round(face / FACE_IN_CROP[2])
            spot = _free_spot(rng, height, width, side, placed, gap, tries) if side <= min(height, width) else None
            if spot is not None:
                placed.append((*spot, side))
                break
            if face <= smallest:
                break
            face = max(smallest, 0.8 * face)
    return placed


def _free_spot(rng, height, width, side, placed, gap, tries):
    for _ in range(tries):
        x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        if all(x + side + gap <= px or px + ps + gap <= x or y + side + gap <= py or py + ps + gap <= y
               for px, py, ps in placed):
            return x, y
    return None


def face_region(x: int, y: int, side: int) -> tuple[float, float, float, float]:
    """The face's box in the scene for a crop pasted at ``(x, y)`` with ``side`` px (see :data:`FACE_IN_CROP`)."""
    fx, fy, fw, fh = FACE_IN_CROP
    return (x + fx * side, y + fy * side, fw * side, fh * side)


def compose(background: np.ndarray, crops, layout, *, quality: int = 90) -> bytes:
    """JPEG bytes of ``background`` with each crop resized to its square of ``layout`` and pasted there."""
    image = Image.fromarray(background)
    for crop, (x, y, side) in zip(crops, layout):
        image.paste(Image.fromarray(crop).resize((side, side), Image.Resampling.LANCZOS), (x, y))
    return encode_jpeg(np.asarray(image), quality=quality)


def encode_jpeg(image: np.ndarray, *, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_scenes(n_scenes: int, crops: np.ndarray, labels: np.ndarray, *, max_faces: int = 4,
                face_sizes: tuple[int, int] = (60, 300), random_state: int = 0) -> list[Scene]:
    """``n_scenes`` photos of 1 to ``max_faces`` test crops, each crop used once while the split lasts."""
    rng = np.random.default_rng(random_state)
    order = iter(np.concatenate([rng.permutation(len(crops)) for _ in range(1 + n_scenes * max_faces // len(crops))]))
    scenes = []
    for _ in range(n_scenes):
        long = int(rng.integers(640, 1601))
        height, width = round(long * 3 / 4), long
        if rng.random() < 0.25:
            height, width = width, height
        kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
        background = make_background(kind, height, width, rng)
        layout = random_layout(rng, height, width, int(rng.integers(1, max_faces + 1)), face_sizes)
        indices = [int(next(order)) for _ in layout]
        scene = Scene(jpeg=compose(background, crops[indices], layout), shape=(height, width), background=kind)
        for index, (x, y, side) in zip(indices, layout):
            scene.faces.append(TrueFace(index=index, box=face_region(x, y, side), size=FACE_IN_CROP[2] * side,
                                        age=float(labels[index, 0]), gender=int(labels[index, 1])))
        scenes.append(scene)
    return scenes


def timing_photos(crops: np.ndarray, rng_seed: int = 1) -> dict[str, bytes]:
    """The photos of the timings: 640x480 with one 150 px face, 1280x900 with six."""
    rng = np.random.default_rng(rng_seed)
    side = round(150 / FACE_IN_CROP[2])
    picks = [crops[i % len(crops)] for i in range(6)]
    photo = compose(make_background("gradient", 480, 640, rng), picks[:1], [(320 - side // 2, 240 - side // 2, side)])
    layout = [(213 * (2 * col + 1) - side // 2, 225 * (2 * row + 1) - side // 2, side)
              for row in range(2) for col in range(3)]
    group = compose(make_background("clouds", 900, 1280, rng), picks, layout)
    return {"photo": photo, "group": group}


# --------------------------------------------------------------------------- scenes: matching

def iou(a, b) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = width * height
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match_faces(true_boxes, detected_boxes, threshold: float = 0.3) -> dict[int, int]:
    """True face index -> detected box index, one to one, best IoU first, IoU >= ``threshold``."""
    pairs = sorted(((iou(t, d), i, j) for i, t in enumerate(true_boxes) for j, d in enumerate(detected_boxes)),
                   reverse=True)
    matched, used = {}, set()
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def centre_inside(box, detected_boxes) -> bool:
    """Whether some detected box's centre lies in ``box``."""
    x, y, w, h = box
    return any(x <= dx + dw / 2 <= x + w and y <= dy + dh / 2 <= y + h for dx, dy, dw, dh in detected_boxes)


# --------------------------------------------------------------------------- scenes: measuring

@dataclass
class Variant:
    """A ``min_face_size`` (a fraction of the shorter side) and a ``min_face_pixels`` floor (None for none)."""

    name: str
    fraction: float
    floor: int | None = None


@dataclass
class Tally:
    found: dict = field(default_factory=dict)          # face id -> found (IoU rule)
    found_centre: dict = field(default_factory=dict)   # face id -> found (centre rule)
    answers: dict = field(default_factory=dict)        # face id -> (age, gender 0/1) of its matched box
    false_positives: int = 0
    ms: list = field(default_factory=list)


def variants_of(args) -> list[Variant]:
    base = args.min_face_sizes[0]
    return ([Variant(f"{f:g}", f) for f in args.min_face_sizes]
            + [Variant(f"{base:g}|{n:g}px", base, int(n)) for n in args.min_face_floors])


def variant_pipelines(shipped, variants):
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    return {v.name: Pipeline([("faces", clone(shipped[0])), ("preprocess", shipped[1]), ("model", shipped[2])])
            for v in variants}


def _run(pipeline, variant: Variant, shape, call):
    pipeline[0].set_params(min_face_size=variant.fraction, min_face_pixels=variant.floor)
    return call(pipeline)


def measure_scenes(scenes: list[Scene], variants, pipelines) -> dict[str, Tally]:
    """Every variant on every scene, interleaved; per variant, what it found and answered."""
    from tqdm.auto import tqdm

    from skface.network.pipeline import predict_rows

    tallies = {v.name: Tally() for v in variants}
    face_id = 0
    for scene in tqdm(scenes, desc="scenes", unit="photo", dynamic_ncols=True):
        truth = [face.box for face in scene.faces]
        for variant in variants:
            pipeline = pipelines[variant.name]
            pipeline[0].set_params(min_face_size=variant.fraction, min_face_pixels=variant.floor)
            start = time.perf_counter()
            row = predict_rows(pipeline, [scene.jpeg])[0]
            tally = tallies[variant.name]
            tally.ms.append(1000 * (time.perf_counter() - start))
            detected = [face["box"] for face in row["faces"]]
            matched = match_faces(truth, detected)
            tally.false_positives += len(detected) - len(matched)
            for k, box in enumerate(truth):
                tally.found[face_id + k] = k in matched
                tally.found_centre[face_id + k] = centre_inside(box, detected)
                if k in matched:
                    answer = row["faces"][matched[k]]
                    tally.answers[face_id + k] = (answer["age"], int(answer["gender"] == "female"))
        face_id += len(truth)
    return tallies


def time_rounds(tasks: dict, rounds: int) -> dict[str, list[float]]:
    """Milliseconds of each task over ``rounds`` rounds, each round through every task in turn (two warm-ups)."""
    from tqdm.auto import tqdm

    for task in tasks.values():
        task()
        task()
    times = {name: [] for name in tasks}
    for _ in tqdm(range(rounds), desc="timing", unit="round", dynamic_ncols=True):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            times[name].append(1000 * (time.perf_counter() - start))
    return times


def _post(url: str, jpeg: bytes, params: dict | None = None) -> dict:
    from skface.tracking.pyfunc import IMAGE_COLUMN, encode_image

    body = {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[encode_image(jpeg)]]}}
    if params:
        body["params"] = params
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())["predictions"][0]
    if answer["error"]:
        raise RuntimeError(f"the served model answered an error: {answer['error']}")
    return answer


def load_test_split(data: str, n_synthetic: int, seed: int):
    """The test split: 200x200 RGB crops, ``[age, gender]`` labels, the crops as JPEG files' bytes, a description."""
    from skface import load_utkface, make_synthetic_faces
    from skface.evaluation import stratified_split

    if data == "synthetic":
        images, target = make_synthetic_faces(n_synthetic, image_size=200, color="rgb", random_state=seed)
        files = None
        source = f"{n_synthetic} synthetic faces (a dry run: the shipped model knows nothing about them)"
    else:
        faces = load_utkface(data, image_size=200, color="rgb")
        images, target = faces.images, faces.target
        files = [Path(data) / name for name in faces.filenames]
        source = f"crop_part1 ({len(target)} crops)"
    _, test, _, _ = stratified_split(np.arange(len(target)), target, test_size=0.2, random_state=0)
    jpegs = ([encode_jpeg(images[i], quality=95) for i in test] if files is None
             else [files[i].read_bytes() for i in test])
    return images[test], target[test], jpegs, f"test split (20%, stratified, random_state=0) of {source}"


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def scenes(args) -> None:
    from tqdm.auto import tqdm

    from skface import load_pretrained
    from skface.faces import FaceDetector, load_rgb
    from skface.network.pipeline import predict_rows

    crops, labels, jpegs, source = load_test_split(args.data, args.n_synthetic, args.seed)
    shipped = load_pretrained(args.model)
    variants = variants_of(args)
    pipelines = variant_pipelines(shipped, variants)
    print(f"Building {args.scenes} scenes from the {source}", flush=True)
    built = make_scenes(args.scenes, crops, labels, max_faces=args.max_faces, face_sizes=args.face_sizes,
                        random_state=args.seed)
    faces = [face for scene in built for face in scene.faces]
    tallies = measure_scenes(built, variants, pipelines)

    # The same faces given as crops, through the shipped model without its face step.
    crop_files = [jpegs[face.index] for face in faces]
    as_crops = predict_rows(shipped, crop_files, crops=True)
    crop_answers = {i: (row["age"], int(row["gender"] == "female")) for i, row in enumerate(as_crops)}
    # The same crops detected and always warped to the template: the share of the gap that alignment alone costs,
    # and which faces the detector misses even on their own crop (kept whole, confidence None).
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    warp = Pipeline([("faces", clone(shipped[0]).set_params(tight_crop_tolerance=None)),
                     ("preprocess", shipped[1]), ("model", shipped[2])])
    aligned = predict_rows(warp, crop_files)
    aligned_answers = {i: (row["age"], int(row["gender"] == "female")) for i, row in enumerate(aligned)}
    missed_on_crop = {i for i, row in enumerate(aligned) if row["faces"][0]["confidence"] is None}

    # The tight-crop path: the test crops through the shipped pipeline and through pipeline[1:].
    n_crops = min(args.crops or len(jpegs), len(jpegs))
    tight = {"default": [], "direct": []}
    for start in tqdm(range(0, n_crops, 64), desc="tight crops", unit="batch", dynamic_ncols=True):
        chunk = jpegs[start:min(start + 64, n_crops)]
        tight["default"].append(shipped.predict(chunk))
        tight["direct"].append(shipped[1:].predict(chunk))
    tight = {name: np.concatenate(parts) for name, parts in tight.items()}

    # Timings, interleaved rounds.
    # Synthetic cartoon faces are no faces to MTCNN: the dry run times photos of the astronaut's face instead.
    photos = timing_photos(crops if args.data != "synthetic" else bench_images()["crop 200x200"][None])
    photo_rgb, photo_shape = load_rgb(photos["photo"]), (480, 640)
    crop_jpeg = jpegs[0]
    detector = FaceDetector()
    tasks = {}
    if args.shipped_mtcnn:
        from mtcnn import MTCNN

        shipped_mtcnn = MTCNN()
        tasks["detector alone, mtcnn as shipped"] = lambda: shipped_mtcnn.detect_faces(photo_rgb)
    tasks["detector alone, FaceDetector()"] = lambda: detector.detect(photo_rgb)
    tasks["photo"] = lambda: shipped.predict([photos["photo"]])
    tasks["group"] = lambda: predict_rows(shipped, [photos["group"]])
    tasks["crop, with face step"] = lambda: shipped.predict([crop_jpeg])
    tasks["crop, without (pipeline[1:])"] = lambda: shipped[1:].predict([crop_jpeg])
    for v in variants:
        pipe = pipelines[v.name]
        tasks[f"photo {v.name}"] = lambda v=v, pipe=pipe: _run(pipe, v, photo_shape,
                                                              lambda p: p.predict([photos["photo"]]))
        tasks[f"group {v.name}"] = lambda v=v, pipe=pipe: _run(pipe, v, (900, 1280),
                                                              lambda p: predict_rows(p, [photos["group"]]))
    with contextlib.ExitStack() as stack:
        if args.serve:
            from skface.tracking.pyfunc import save_model
            from skface.tracking.servers import scoring_server

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            print("Starting `mlflow models serve` on the shipped model", flush=True)
            model = save_model(shipped, folder / "model")
            url, _ = stack.enter_context(scoring_server(str(model), folder / "server.log"))
            tasks["served photo"] = lambda: _post(url, photos["photo"])
            tasks["served crop"] = lambda: _post(url, crop_jpeg)
            tasks["served crop, crops=true"] = lambda: _post(url, crop_jpeg, {"crops": True})
        times = time_rounds(tasks, args.rounds)
    p50 = {name: statistics.median(values) for name, values in times.items()}
    p90 = {name: float(np.percentile(values, 90)) for name, values in times.items()}

    print_scene_table(args, built, faces, variants, tallies, crop_answers, aligned_answers, missed_on_crop, p50)
    print_tight_crops(tight, labels[:n_crops])
    print_timings(args, p50, p90)
    print_goals(variants[0], faces, tallies, crop_answers, p50)


# --------------------------------------------------------------------------- scenes: printing

LABEL = 44
CELL = 11


def _row(label: str, cells, fmt: str = ".2f") -> None:
    print(f"{label:<{LABEL}}" + "".join(f"{value:>{CELL}{fmt}}" for value in cells))


def size_bins(face_sizes) -> list[tuple[int, int]]:
    """Three face-size bins (px, half-open), log-equal over ``face_sizes``."""
    low, high = face_sizes
    edges = [round(low * (high / low) ** (k / 3)) for k in range(4)]
    edges[-1] = high + 1
    return list(itertools.pairwise(edges))


def _share(flags) -> float:
    return 100 * _mean(flags)


def _face_errors(ids, answers, faces):
    ages = [abs(answers[i][0] - faces[i].age) for i in ids]
    right = [answers[i][1] == faces[i].gender for i in ids]
    return _mean(ages), 100 * _mean(right)


def print_scene_table(args, built, faces, variants, tallies, crop_answers, aligned_answers, missed_on_crop,
                      p50) -> None:
    sizes = np.array([face.size for face in faces])
    relative = np.array([face.size / min(scene.shape) for scene in built for face in scene.faces])
    backgrounds = [scene.background for scene in built for _ in scene.faces]
    all_mae, all_acc = _face_errors(range(len(faces)), crop_answers, faces)
    print(f"\n== Scenes: {len(built)} photos, {len(faces)} faces of {args.face_sizes[0]}-{args.face_sizes[1]} px "
          f"(face box side; median {np.median(sizes):.0f} px), seed {args.seed}. All {len(faces)} faces as crops: "
          f"age MAE {all_mae:.2f}, gender {all_acc:.1f} %.")
    print(f"FaceDetector() misses {len(missed_on_crop)} of these faces on their own 200x200 crop already.")
    print("Columns: FaceAligner min_face_size (fraction of the shorter side; 'f|Npx' = min(f, N px)).")
    print(f"{'':<{LABEL}}" + "".join(f"{v.name:>{CELL}}" for v in variants))
    _row("faces found, IoU >= 0.3 (%)", [_share(list(tallies[v.name].found.values())) for v in variants])
    _row("faces found, centre inside (%)", [_share(list(tallies[v.name].found_centre.values())) for v in variants])
    for low, high in size_bins(args.face_sizes):
        ids = np.flatnonzero((sizes >= low) & (sizes < high))
        _row(f"  faces {low}-{high - 1} px, n={len(ids)} (%)",
             [_share([tallies[v.name].found[i] for i in ids]) for v in variants])
    for low, high in RELATIVE_BINS:
        ids = np.flatnonzero((relative >= low) & (relative < high))
        label = f"  faces {low:g}-{high:g} x shorter side" if high < 1 else f"  faces >= {low:g} x shorter side"
        _row(f"{label}, n={len(ids)} (%)", [_share([tallies[v.name].found[i] for i in ids]) for v in variants])
    ids = [i for i in range(len(faces)) if i not in missed_on_crop]
    _row(f"  faces found on their own crop, n={len(ids)} (%)",
         [_share([tallies[v.name].found[i] for i in ids]) for v in variants])
    for kind in BACKGROUNDS:
        ids = [i for i, b in enumerate(backgrounds) if b == kind]
        _row(f"  on {kind}, n={len(ids)} (%)", [_share([tallies[v.name].found[i] for i in ids]) for v in variants])
    _row("false positives per photo", [tallies[v.name].false_positives / len(built) for v in variants], ".3f")
    photo, crop, warped, gap, gender_photo, gender_crop = [], [], [], [], [], []
    for v in variants:
        ids = list(tallies[v.name].answers)
        mae_photo, acc_photo = _face_errors(ids, tallies[v.name].answers, faces)
        mae_crop, acc_crop = _face_errors(ids, crop_answers, faces)
        photo.append(mae_photo), crop.append(mae_crop), gap.append(mae_photo - mae_crop)
        warped.append(_face_errors(ids, aligned_answers, faces)[0])
        gender_photo.append(acc_photo), gender_crop.append(acc_crop)
    _row("age MAE, photo path (found faces)", photo)
    _row("age MAE, same faces as crops", crop)
    _row("age MAE, same crops detected + warped", warped)
    _row("age MAE gap, photo - crops", gap)
    for low, high in size_bins(args.face_sizes):
        cells = []
        for v in variants:
            ids = [i for i in tallies[v.name].answers if low <= faces[i].size < high]
            cells.append(_face_errors(ids, tallies[v.name].answers, faces)[0] - _face_errors(ids, crop_answers, faces)[0])
        _row(f"  gap, faces {low}-{high - 1} px", cells)
    _row("gender accuracy, photo path (%)", gender_photo)
    _row("gender accuracy, same faces as crops (%)", gender_crop)
    _row("predict_rows on a scene, p50 (ms)", [statistics.median(tallies[v.name].ms) for v in variants], ".1f")
    _row("640x480 1 face, predict, p50 (ms)", [p50[f"photo {v.name}"] for v in variants], ".1f")
    _row("1280x900 6 faces, predict_rows, p50 (ms)", [p50[f"group {v.name}"] for v in variants], ".1f")


def print_tight_crops(tight, labels) -> None:
    print(f"\n== Tight crops: {len(labels)} test crops (200x200 JPEG files)")
    print(f"{'':<{LABEL}}{'default path':>16}{'pipeline[1:]':>16}")
    for label, figure, fmt in (("age MAE", lambda y: np.mean(np.abs(y[:, 0] - labels[:, 0])), ".3f"),
                               ("gender accuracy (%)", lambda y: 100 * np.mean(y[:, 1] == labels[:, 1]), ".2f")):
        print(f"{label:<{LABEL}}{figure(tight['default']):>16{fmt}}{figure(tight['direct']):>16{fmt}}")


def print_timings(args, p50, p90) -> None:
    from skface.network.measure import cpu_name

    print(f"\n== Timings: ms over {args.rounds} interleaved rounds, in process unless served; "
          f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    print(f"{'':<{LABEL + 16}}{'p50':>9}{'p90':>9}")
    labels = {"detector alone, mtcnn as shipped": "640x480 1 face: detector alone, mtcnn as shipped",
              "detector alone, FaceDetector()": "640x480 1 face: detector alone, FaceDetector()",
              "photo": "640x480 1 face: load_pretrained().predict([jpeg])",
              "group": "1280x900 6 faces: predict_rows(load_pretrained(), ...)",
              "served photo": "640x480 1 face: served, end to end",
              "crop, with face step": "200x200 crop: load_pretrained().predict([jpeg])",
              "crop, without (pipeline[1:])": "200x200 crop: pipeline[1:].predict([jpeg])",
              "served crop": "200x200 crop: served, end to end",
              "served crop, crops=true": "200x200 crop: served, params crops=true"}
    for name, label in labels.items():
        if name in p50:
            print(f"{label:<{LABEL + 16}}{p50[name]:>9.1f}{p90[name]:>9.1f}")


def print_goals(baseline: Variant, faces, tallies, crop_answers, p50) -> None:
    tally = tallies[baseline.name]
    ids = list(tally.answers)
    gap = _face_errors(ids, tally.answers, faces)[0] - _face_errors(ids, crop_answers, faces)[0]
    recall = 100 * _mean(list(tally.found.values()))
    print(f"\n== Goals, library defaults (min_face_size={baseline.name})")
    print(f"faces found >= 98 %: {recall:.2f} % {'met' if recall >= 98 else 'MISSED'}")
    print(f"age MAE gap <= 0.5 years: {gap:+.2f} {'met' if gap <= 0.5 else 'MISSED'}")
    print(f"640x480 1 face < 25 ms p50 in process: {p50['photo']:.1f} ms {'met' if p50['photo'] < 25 else 'MISSED'}")
    if "served photo" in p50:
        print(f"640x480 1 face < 35 ms p50 served: {p50['served photo']:.1f} ms "
              f"{'met' if p50['served photo'] < 35 else 'MISSED'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    import_tensorflow_quietly()
    if args.command != "speed" and args.data != "synthetic" and not Path(args.data).is_dir():
        sys.exit(f"no UTKFace folder at {args.data}; pass --data with crop_part1's folder (or --data synthetic).")
    commands = {"scenes": scenes, "speed": speed, "detection": detection, "template": template,
                "tight-crops": tight_crops, "occlusion": occlusion}
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

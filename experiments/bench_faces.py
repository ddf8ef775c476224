"""Face detection and alignment: speed, detection rate, the template, tight crops.

Subcommands:

- ``speed``: ms per image of the ``mtcnn`` package as shipped against
  skface.faces.FaceDetector with each lever added, interleaved in the same
  run, on three images built from tests/data/astronaut.jpg (a 200x200 crop,
  a 640x480 photo with one face, a 1280x900 photo with six faces).
- ``detection``: share of UTKFace crops where each detector finds a face.
- ``template``: the five landmarks' median (and spread) on training crops of
  crop_part1, the figures of src/skface/faces/TEMPLATE.md.
- ``tight-crops``: the pretrained model's age MAE and gender accuracy on the
  test crops of crop_part1 given directly, detected and aligned, and through
  the rule that keeps tight crops as they are.

The training/test split is the project's: ``stratified_split`` (test_size=0.2,
random_state=0) over the files as ``load_utkface`` orders them.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from skface.cli.options import whole_number
from skface.quiet import import_tensorflow_quietly

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "tests" / "data" / "astronaut.jpg"
UTKFACE = REPO.parent / "shared" / "data" / "utkface-crop_part1"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("command", choices=("speed", "detection", "template", "tight-crops"),
                        help="what to measure")
    parser.add_argument("--data", type=Path, default=UTKFACE, help="folder of UTKFace crop_part1 images")
    parser.add_argument("--rounds", type=whole_number, default=30, help="speed: timed rounds per variant")
    parser.add_argument("--samples", type=whole_number, default=2000,
                        help="detection/template: training crops drawn (seed 0)")
    parser.add_argument("--max-scale-change", type=float, default=0.15,
                        help="tight-crops: |log scale| under which a face counts as already aligned")
    parser.add_argument("--max-rotation", type=float, default=10.0,
                        help="tight-crops: rotation in degrees under which a face counts as already aligned")
    parser.add_argument("--max-shift", type=float, default=12.0,
                        help="tight-crops: shift in crop pixels under which a face counts as already aligned")
    return parser.parse_args(argv)


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

    images = bench_images()
    shipped = MTCNN()
    variants = {
        "mtcnn 1.0 as shipped (eager, 20 px min face)": lambda image: shipped.detect_faces(image),
        "compiled+batched, same pyramid, full res": lambda image: FaceDetector(
            min_face_size=20 / min(image.shape[:2]), detection_side=None).detect(image),
        "+ min face 0.1 of shorter side": lambda image: FaceDetector(detection_side=None).detect(image),
        "+ search on <=480 px copy (default)": lambda image: FaceDetector().detect(image),
    }
    print(f"CPU: {_cpu_name()}, {os.cpu_count()} cores")
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


def _cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                "unknown")


# --------------------------------------------------------------------------- UTKFace

def split(data: Path):
    from skface import load_utkface
    from skface.evaluation import stratified_split

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
    pipeline = load_pretrained()
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


def main(argv=None) -> int:
    args = parse_args(argv)
    import_tensorflow_quietly()
    if args.command != "speed" and not args.data.is_dir():
        sys.exit(f"no UTKFace folder at {args.data}; pass --data with crop_part1's folder.")
    {"speed": speed, "detection": detection, "template": template, "tight-crops": tight_crops}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

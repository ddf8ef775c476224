"""experiments/bench_faces.py: the scenes it builds, how it matches faces, and a dry run on synthetic faces."""

import io

import numpy as np
import pytest
from PIL import Image

from .scripts import load_script

bench = load_script("bench_faces")


def test_scenes_hold_non_overlapping_faces_with_their_labels():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (10, 200, 200, 3), dtype=np.uint8)
    labels = np.column_stack([np.arange(10) + 20, np.arange(10) % 2])
    scenes = bench.make_scenes(20, crops, labels, max_faces=4, face_sizes=(60, 300), random_state=0)
    assert len(scenes) == 20 and {len(scene.faces) for scene in scenes} <= {1, 2, 3, 4}
    for scene in scenes:
        height, width = scene.shape
        assert 480 <= min(height, width) and max(height, width) <= 1600
        with Image.open(io.BytesIO(scene.jpeg)) as image:
            assert (image.height, image.width) == (height, width)
        for face in scene.faces:
            x, y, w, h = face.box
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
            assert 60 - 1 <= face.size <= 300 + 1 and w == pytest.approx(face.size)
            assert (face.age, face.gender) == tuple(labels[face.index])
        boxes = [face.box for face in scene.faces]
        assert all(bench.iou(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:])
    again = bench.make_scenes(20, crops, labels, random_state=0)
    assert [s.jpeg for s in again] == [s.jpeg for s in scenes]  # seeded


def test_matching_is_one_to_one_by_best_overlap():
    truth = [(0, 0, 100, 100), (200, 0, 100, 100)]
    detected = [(210, 10, 100, 100), (5, 5, 100, 100), (20, 20, 60, 60), (500, 500, 50, 50)]
    assert bench.match_faces(truth, detected) == {0: 1, 1: 0}
    assert bench.match_faces(truth, [(0, 0, 100, 10)]) == {}  # IoU 0.1 < 0.3
    assert bench.centre_inside(truth[0], [(0, 0, 100, 10)])  # the laxer rule counts it
    assert not bench.centre_inside(truth[1], [(0, 0, 100, 10)])


def test_floor_variant_sets_the_aligners_pixel_floor():
    from sklearn.pipeline import Pipeline

    from skface.faces import FaceAligner

    pipeline = Pipeline([("faces", FaceAligner())])
    params = bench._run(pipeline, bench.Variant("0.1|40px", 0.1, 40), (480, 640), lambda p: p[0].get_params())
    assert params["min_face_size"] == 0.1 and params["min_face_pixels"] == 40
    params = bench._run(pipeline, bench.Variant("0.05", 0.05), (480, 640), lambda p: p[0].get_params())
    assert params["min_face_size"] == 0.05 and params["min_face_pixels"] is None


def test_dry_run_on_synthetic_faces_prints_the_tables(capsys):
    assert bench.main(["scenes", "--data", "synthetic", "--n-synthetic", "40", "--scenes", "3", "--rounds", "1",
                       "--serve", "false", "--shipped-mtcnn", "false", "--min-face-sizes", "0.1,0.05",
                       "--min-face-floors", "40"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.split()[:1] == ["0.1"])
    assert header.split() == ["0.1", "0.05", "0.1|40px"]
    for row in ("faces found, IoU >= 0.3 (%)", "false positives per photo", "age MAE gap, photo - crops",
                "640x480 1 face: load_pretrained().predict([jpeg])", "200x200 crop: pipeline[1:].predict([jpeg])",
                "faces found >= 98 %"):
        assert row in out, row
    assert "== Tight crops: 8 test crops" in out


def test_synthetic_data_is_for_scenes_only(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["template", "--data", "synthetic"])
    assert "--data synthetic is for the scenes dry run" in capsys.readouterr().err


def test_occlusion_finds_the_uncovered_portrait_and_prints_each_cover(tmp_path, capsys):
    # A folder named like UTKFace whose crops are the public-domain portrait, brightened a little more each time.
    portrait = Image.open(bench.ASTRONAUT).convert("RGB").crop((138, 30, 310, 202)).resize((200, 200))
    for i in range(20):
        age, gender = (8, 30)[i % 2], (i // 2) % 2
        brighter = np.clip(np.asarray(portrait, dtype=int) + i, 0, 255).astype(np.uint8)
        Image.fromarray(brighter).save(tmp_path / f"{age}_{gender}_0_2017011{i % 10}1{i:08d}.jpg.chip.jpg")
    assert bench.main(["occlusion", "--data", str(tmp_path), "--samples", "2"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.split()[:1] in (["none"], ["sunglasses"], ["face"], ["half"])}
    assert set(rows) == {"none", "sunglasses", "face", "half"}
    assert rows["none"][1] == "100.0%"

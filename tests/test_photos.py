"""Whole photos through the shipped pipeline: every face found, aligned and answered, on a public-domain portrait."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skface import load_pretrained
from skface.cli import main
from skface.faces import FaceAligner
from skface.network.pipeline import predict_rows

ASTRONAUT = Path(__file__).with_name("data") / "astronaut.jpg"


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


@pytest.fixture(scope="module")
def portrait():
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _scene(portrait, size, places, face_side):
    """``portrait`` shrunk so that its face is about ``face_side`` px, pasted at ``places`` on a grey canvas."""
    scale = face_side / 110  # the astronaut's face box is about 85x110 px in the 512 px portrait
    small = Image.fromarray(portrait).resize((round(512 * scale), round(512 * scale)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size, (118, 124, 130))
    for x, y in places:
        canvas.paste(small, (x, y))
    return np.asarray(canvas), scale


def test_the_shipped_pipeline_starts_with_the_face_step(model):
    assert [name for name, _ in model.steps] == ["faces", "preprocess", "model"]
    assert isinstance(model.named_steps["faces"], FaceAligner)


def test_a_face_small_and_off_centre_is_found_and_answered_like_the_portrait(model, portrait):
    scene, scale = _scene(portrait, (1024, 768), [(620, 340)], face_side=150)
    plain, pasted = predict_rows(model, [portrait, scene])
    assert not plain["error"] and not pasted["error"] and len(pasted["faces"]) == 1
    x, y, w, h = pasted["faces"][0]["box"]
    px, py, pw, ph = plain["faces"][0]["box"]
    assert abs(x - (620 + px * scale)) < 12 and abs(y - (340 + py * scale)) < 12
    assert abs(w - pw * scale) < 15 and pasted["faces"][0]["confidence"] > 0.9
    assert abs(pasted["age"] - plain["age"]) < 5 and pasted["gender"] == plain["gender"]
    # The whole photo through the scikit-learn API answers for its face, not for the background.
    assert model.predict([_jpeg(scene)])[0, 0] == pytest.approx(pasted["age"], abs=1.0)


def test_every_face_of_a_group_is_answered(model, portrait):
    scene, _ = _scene(portrait, (1280, 700), [(20, 100), (450, 60), (880, 120)], face_side=120)
    row = predict_rows(model, [scene])[0]
    assert len(row["faces"]) == 3
    xs = sorted(face["box"][0] for face in row["faces"])
    assert xs[0] < 450 < xs[1] < 880 < xs[2]
    ages = [face["age"] for face in row["faces"]]
    assert max(ages) - min(ages) < 6 and {face["gender"] for face in row["faces"]} == {row["gender"]}


def test_a_photo_without_a_face_is_an_error_row_and_the_others_are_answered(model, portrait):
    white = np.full((300, 400, 3), 255, dtype=np.uint8)
    rows = predict_rows(model, [white, portrait])
    assert rows[0]["age"] is None and rows[0]["faces"] == []
    assert rows[0]["error"].startswith("no face found in this 400x300 image")
    assert rows[1]["age"] is not None
    with pytest.raises(ValueError, match="item 0: no face found"):
        model.predict([white])


def test_tight_crops_keep_their_answer(model):
    """A crop-shaped image is answered as a crop whether or not a face is found in it."""
    from skface import make_synthetic_faces

    crops, _ = make_synthetic_faces(3, image_size=200, color="rgb", random_state=1)
    direct = model[1:].predict(list(crops))
    np.testing.assert_allclose(model.predict(list(crops)), direct, rtol=1e-5)
    rows = predict_rows(model, list(crops))
    assert [row["faces"][0]["box"] for row in rows] == [[0.0, 0.0, 200.0, 200.0]] * 3


def test_crops_mode_skips_the_face_step(model):
    white = np.full((300, 400, 3), 255, dtype=np.uint8)
    row = predict_rows(model, [white], crops=True)[0]
    assert not row["error"] and row["faces"][0]["box"] is None and row["faces"][0]["confidence"] is None


def test_skface_predict_prints_a_line_per_face_and_annotates(tmp_path, portrait, capsys):
    scene, _ = _scene(portrait, (900, 500), [(10, 40), (480, 40)], face_side=110)
    Image.fromarray(scene).save(tmp_path / "pair.jpg")
    Image.new("RGB", (320, 240), "white").save(tmp_path / "empty.png")
    code = main(["predict", str(tmp_path / "pair.jpg"), str(tmp_path / "empty.png"), "--json",
                 "--annotate", str(tmp_path / "annotated")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # one file has no face
    assert [(line["file"].rsplit("/", 1)[1], line["face"]) for line in lines] == [
        ("pair.jpg", 0), ("pair.jpg", 1), ("empty.png", None)]
    assert all(len(line["box"]) == 4 and line["confidence"] > 0.9 for line in lines[:2])
    assert "no face found" in lines[2]["error"]
    annotated = Image.open(tmp_path / "annotated" / "pair.jpg")
    assert annotated.size == (900, 500)
    # The boxes are drawn: the annotated image differs from the photo around the faces only.
    difference = np.abs(np.asarray(annotated, dtype=int) - np.asarray(Image.open(tmp_path / "pair.jpg"), dtype=int))
    assert difference.max() > 100 and not (tmp_path / "annotated" / "empty.jpg").exists()


def test_predict_faces_gives_everything_about_each_face(model):
    from skface import predict_faces

    (face,) = predict_faces(model, str(ASTRONAUT))
    assert set(face) == {"box", "confidence", "landmarks", "crop", "age", "age_low", "age_high", "gender",
                         "gender_probability"}
    x, y, w, h = face["box"]
    assert face["landmarks"].shape == (5, 2) and face["crop"].shape == (200, 200, 3)
    assert np.all((face["landmarks"] >= [x, y]) & (face["landmarks"] <= [x + w, y + h]))
    row = predict_rows(model, [str(ASTRONAUT)])[0]
    assert face["age"] == pytest.approx(row["age"]) and face["gender"] == row["gender"]
    with pytest.raises(TypeError, match="starts with a skface.faces.FaceAligner"):
        predict_faces(model[1:], str(ASTRONAUT))

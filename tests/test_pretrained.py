import json

import numpy as np
import pytest
from PIL import Image
from sklearn.pipeline import Pipeline

from skface import (
    AgeGenderCNN,
    ImagePreprocessor,
    PretrainedModelError,
    load_pretrained,
    save_pretrained,
)
from skface.network.persistence import default_pretrained_dir
from tests.conftest import TINY


@pytest.fixture(scope="module")
def pipeline(tiny_data):
    X, y = tiny_data
    return Pipeline([("preprocess", ImagePreprocessor(image_size=16)), ("model", AgeGenderCNN(**TINY).fit(X, y))])


def test_save_then_load_gives_the_same_predictions(pipeline, tiny_data, tmp_path):
    X, _ = tiny_data
    folder = save_pretrained(pipeline, tmp_path / "model", metadata={"data": "random"})
    assert sorted(p.name for p in folder.iterdir()) == ["model.keras", "skface.json"]
    assert json.loads((folder / "skface.json").read_text())["metadata"] == {"data": "random"}
    loaded = load_pretrained(folder)
    np.testing.assert_allclose(loaded.predict(X), pipeline.predict(X), rtol=1e-6)
    np.testing.assert_allclose(loaded.predict_proba(X), pipeline.predict_proba(X), rtol=1e-6)
    assert loaded.get_params()["model__filters"] == TINY["filters"]
    assert loaded.get_params()["model__zoom_tta"] == ()
    assert loaded.named_steps["model"].input_shape_ == (16, 16, 1)


def test_loaded_pipeline_predicts_from_files_and_bytes(pipeline, tmp_path):
    path = tmp_path / "face.jpg"
    Image.new("RGB", (50, 40), (120, 90, 60)).save(path)
    loaded = load_pretrained(save_pretrained(pipeline, tmp_path / "m"))
    from_path = loaded.predict([path])
    from_bytes = loaded.predict([path.read_bytes()])
    np.testing.assert_array_equal(from_path, from_bytes)


def test_missing_shipped_model_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr("skface.network.persistence.default_pretrained_dir", lambda: tmp_path / "none")
    with pytest.raises(PretrainedModelError, match="missing from this installation.*reinstall skface"):
        load_pretrained()


def test_default_dir_is_inside_the_package():
    assert default_pretrained_dir().parent.name == "skface"


def test_folder_without_a_model(tmp_path):
    with pytest.raises(PretrainedModelError, match="holds no saved skface model"):
        load_pretrained(tmp_path)


def test_damaged_params_file(pipeline, tmp_path):
    folder = save_pretrained(pipeline, tmp_path / "m")
    (folder / "skface.json").write_text("{not json")
    with pytest.raises(PretrainedModelError, match="not valid JSON"):
        load_pretrained(folder)


def test_save_refuses_other_objects(tmp_path):
    with pytest.raises(TypeError, match="an optional FaceAligner, an ImagePreprocessor, then an AgeGenderCNN, got "
                                        "ImagePreprocessor, ImagePreprocessor"):
        save_pretrained(Pipeline([("a", ImagePreprocessor()), ("b", ImagePreprocessor())]), tmp_path)


SHIPPED = default_pretrained_dir()


@pytest.mark.skipif(not (SHIPPED / "model.keras").is_file(), reason="this checkout ships no pretrained model")
def test_shipped_model_is_small_and_predicts_from_any_input():
    from skface import make_synthetic_faces

    assert sum(f.stat().st_size for f in SHIPPED.iterdir() if f.is_file()) <= 10_000_000
    model = load_pretrained()
    faces, _ = make_synthetic_faces(2, image_size=200, color="rgb", random_state=0)
    buf = __import__("io").BytesIO()
    Image.fromarray(faces[0]).save(buf, format="JPEG")
    y_pred = model.predict([faces[0], buf.getvalue(), Image.fromarray(faces[1])])
    assert y_pred.shape == (3, 2) and np.all((y_pred[:, 0] >= 0) & (y_pred[:, 0] <= 120))
    metadata = json.loads((SHIPPED / "skface.json").read_text())["metadata"]
    assert {"age_mae", "gender_accuracy"} <= set(metadata["test_metrics"])


def test_zoom_tta_survives_the_json(pipeline, tiny_data, tmp_path):
    X, _ = tiny_data
    pipeline.set_params(model__zoom_tta=(1.1, 0.9))
    try:
        loaded = load_pretrained(save_pretrained(pipeline, tmp_path / "zoom"))
        expected = pipeline.predict_proba(X)
    finally:
        pipeline.set_params(model__zoom_tta=())
    assert loaded.get_params()["model__zoom_tta"] == (1.1, 0.9)
    np.testing.assert_allclose(loaded.predict_proba(X), expected, rtol=1e-6)


@pytest.mark.skipif(not (SHIPPED / "model.keras").is_file(), reason="this checkout ships no pretrained model")
def test_shipped_model_is_its_configuration():
    # The shipped files and the configuration they name must not drift apart: `skface train --config NAME`
    # is how the model card says to reproduce them.
    from skface.configurations import get_configuration

    stored = json.loads((SHIPPED / "skface.json").read_text())
    config = get_configuration(stored["metadata"]["configuration"])
    model = load_pretrained()
    shipped = model.named_steps["model"].get_params()
    expected = AgeGenderCNN(**config["estimator"]).get_params()  # the configuration over the defaults
    for name in ("random_state", "verbose"):  # set by `skface train`, not by the configuration
        del shipped[name], expected[name]
    assert shipped == expected
    preprocess = model.named_steps["preprocess"]
    assert (preprocess.image_size, preprocess.color) == (config["image_size"], config["color"])


def test_the_face_step_is_saved_and_loaded(pipeline, tmp_path):
    from skface.faces import FaceAligner

    with_faces = Pipeline([("faces", FaceAligner(min_face_size=0.2, on_no_face="keep")), *pipeline.steps])
    loaded = load_pretrained(save_pretrained(with_faces, tmp_path / "faces"))
    assert [name for name, _ in loaded.steps] == ["faces", "preprocess", "model"]
    assert loaded[0].get_params() == with_faces[0].get_params()
    image = np.full((30, 50, 3), 128, dtype=np.uint8)  # no face, kept whole (on_no_face="keep")
    np.testing.assert_array_equal(loaded.predict([image]), with_faces.predict([image]))

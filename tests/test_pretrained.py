import io
import json
import shutil
import time
import tracemalloc
import zipfile

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
from skface.faces import FaceAligner
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


# A saved folder is data from anywhere: every entry of skface.json is checked before anything is built.

def test_a_folder_with_a_tilde_is_saved_and_loaded_in_the_home_folder(pipeline, tiny_data, tmp_path, monkeypatch):
    from skface.network.persistence import read_metadata

    monkeypatch.setenv("HOME", str(tmp_path))
    save_pretrained(pipeline, "~/model", metadata={"note": "home"})
    assert (tmp_path / "model" / "skface.json").is_file()
    X, _ = tiny_data
    np.testing.assert_array_equal(load_pretrained("~/model").predict(X[:4]), pipeline.predict(X[:4]))
    assert read_metadata("~/model") == {"note": "home"}


@pytest.fixture(scope="module")
def saved(pipeline, tmp_path_factory):
    return save_pretrained(pipeline, tmp_path_factory.mktemp("saved") / "model")


def tampered(saved, tmp_path, edit=None, network=None):
    """A copy of the saved folder with ``edit(state)`` changing its skface.json, or ``network`` as model.keras."""
    folder = tmp_path / "tampered"
    shutil.copytree(saved, folder)
    if edit is not None:
        state = json.loads((folder / "skface.json").read_text())
        edit(state)
        (folder / "skface.json").write_text(json.dumps(state))
    if network is not None:
        (folder / "model.keras").write_bytes(network)
    return folder


def test_an_image_size_the_network_does_not_take_is_refused_before_anything_is_built(saved, tmp_path):
    folder = tampered(saved, tmp_path, lambda state: state["preprocessor"].update(image_size=40000))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(PretrainedModelError, match=r"skface.json is not a valid skface model: "
                           r"preprocessor.image_size and color are 40000 and 'grayscale', but the network takes "
                           r"16x16 images with 1 channel .*which need image_size=16"):
            load_pretrained(folder)
        seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 0.5 and peak < 20 * 2**20  # a 40000x40000 image would be 1.6 GB


def test_an_image_size_changed_in_the_json_and_the_shape_together_is_refused(saved, tmp_path):
    def edit(state):
        state["preprocessor"]["image_size"] = state["fitted"]["n_features_in_"] = 40000
        state["fitted"]["input_shape_"] = [40000, 40000, 1]

    with pytest.raises(PretrainedModelError, match=r"fitted.input_shape_: must be \[side, side, channels\] with a "
                                                   r"side of 1 to 512 pixels"):
        load_pretrained(tampered(saved, tmp_path, edit))


def test_a_network_of_another_input_than_the_json_says_is_refused_before_keras_builds_it(pipeline, saved, tmp_path):
    def edit(state):
        state["preprocessor"]["image_size"] = state["fitted"]["n_features_in_"] = 32
        state["fitted"]["input_shape_"] = [32, 32, 1]

    with pytest.raises(PretrainedModelError, match=r"model.keras is not this model's network: its network takes "
                                                   r"inputs \[\[None, 16, 16, 1\]\], but skface.json says images of "
                                                   r"shape \[32, 32, 1\]"):
        load_pretrained(tampered(saved, tmp_path, edit))


@pytest.mark.parametrize("edit, match", [
    (lambda s: s["estimator"].update(zoom_tta=[1.1] * 2000),
     r"estimator: zoom_tta must be a tuple of at most 8 zoom factors .*got \(1.1, 1.1, 1.1, 1.1, 1.1, 1.1, \.\.\.\)"),
    (lambda s: s["estimator"].update(zoom_tta=[9.0]), "estimator: zoom_tta must be a tuple of at most 8 zoom factors"),
    (lambda s: s["preprocessor"].update(max_pixels=None),
     (r"preprocessor.max_pixels must be an integer from 1 to 200,000,000 \(the decompression-bomb guard of a saved "
      r"model is always on\), got None")),
    (lambda s: s["preprocessor"].update(max_pixels=10**12), "preprocessor.max_pixels must be an integer from 1 to"),
    (lambda s: s.update(aligner={**FaceAligner().get_params(), "max_pixels": None, "tight_crop_tolerance": None}),
     "aligner.max_pixels must be an integer from 1 to 200,000,000"),
    (lambda s: s.update(aligner={**FaceAligner().get_params(), "detection_side": None, "tight_crop_tolerance": None}),
     "aligner.detection_side must be an integer of at most 4096 pixels in a saved model, got None"),
    (lambda s: s.update(aligner={**FaceAligner().get_params(), "on_no_face": "ignore", "tight_crop_tolerance": None}),
     "aligner: on_no_face must be one of"),
])
def test_parameters_beyond_the_bounds_are_refused(saved, tmp_path, edit, match):
    with pytest.raises(PretrainedModelError, match=r"skface.json is not a valid skface model: " + match):
        load_pretrained(tampered(saved, tmp_path, edit))


@pytest.mark.parametrize("edit, match", [
    (lambda s: s["estimator"].pop("dropout"), r"the section 'estimator' lacks the keys \['dropout'\]"),
    (lambda s: s["estimator"].update(shell="rm"), r"the section 'estimator' has unknown keys \['shell'\]"),
    (lambda s: s.pop("fitted"), r"the section 'top level' lacks the keys \['fitted'\]"),
    (lambda s: s["fitted"].pop("history_"), r"the section 'fitted' lacks the keys \['history_'\]"),
    (lambda s: s["preprocessor"].pop("color"), r"the section 'preprocessor' lacks the keys \['color'\]"),
    (lambda s: s.update(format=2), "it has format 2, this skface reads format 1"),
])
def test_missing_and_unknown_keys_are_named(saved, tmp_path, edit, match):
    with pytest.raises(PretrainedModelError, match=r"skface.json is not a valid skface model: " + match):
        load_pretrained(tampered(saved, tmp_path, edit))


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.update(estimator="seed"), r"the section 'estimator' must be a JSON object, got 'seed'"),
    (lambda s: s["estimator"].update(dropout="high"),
     r"estimator: The 'dropout' parameter of AgeGenderCNN must be a float in the range \[0.0, 1.0\). Got 'high'"),
    (lambda s: s["estimator"].update(filters=[[4], 8]), "estimator: filters must be a non-empty tuple of positive ints"),
    (lambda s: s["estimator"].update(callbacks=[{"class_name": "X"}]), "estimator.callbacks must be null"),
    (lambda s: s["preprocessor"].update(image_size="16"), "preprocessor: image_size must be a positive integer"),
    (lambda s: s["fitted"].update(input_shape_="16x16"), r"fitted.input_shape_: must be \[side, side, channels\]"),
    (lambda s: s["fitted"].update(n_epochs_=2.5), "fitted.n_epochs_: must be a positive integer, got 2.5"),
    (lambda s: s["fitted"].update(history_={"loss": ["x"]}), "fitted.history_: must map each metric's name to a list"),
    (lambda s: s["fitted"].update(n_features_in_=15), r"fitted.n_features_in_ is 15, but the images are 16 pixels high"),
    (lambda s: s["fitted"].update(model_=1), r"fitted: 'model_' is not a fitted attribute's name"),
    (lambda s: s["fitted"].update(scores_=["a"]), r"fitted: scores_ must hold numbers, in lists or under names, got 'a'"),
    (lambda s: s.update(steps=["a", "a"]), "steps must name the 2 steps with distinct identifiers"),
])
def test_values_of_the_wrong_type_are_named(saved, tmp_path, edit, match):
    with pytest.raises(PretrainedModelError, match=r"skface.json is not a valid skface model: " + match):
        load_pretrained(tampered(saved, tmp_path, edit))


def test_a_params_file_that_is_no_json_object_is_named(saved, tmp_path):
    folder = tampered(saved, tmp_path)
    (folder / "skface.json").write_text("[1, 2]")
    with pytest.raises(PretrainedModelError, match="skface.json is not a valid skface model: it must hold a JSON "
                                                   "object, got list"):
        load_pretrained(folder)


def test_extra_fitted_attributes_that_are_well_formed_are_restored(saved, tmp_path):
    # Attributes that a newer skface saves load here as they are.
    folder = tampered(saved, tmp_path, lambda s: s["fitted"].update(future_scores_=[0.5, 1.5], future_scale_=1.2))
    estimator = load_pretrained(folder).named_steps["model"]
    assert (estimator.future_scores_, estimator.future_scale_) == ([0.5, 1.5], 1.2)


@pytest.mark.parametrize("change, message", [
    ({"gender_temperature_": -1.0, "age_conformity_scores_": {"all": [0.5]}}, "fitted.gender_temperature_: must be"),
    ({"gender_temperature_": 1.0, "age_conformity_scores_": {"all": [0.5] * 100_001}}, "fitted.age_conformity_score"),
    ({"gender_temperature_": 1.0, "age_conformity_scores_": {"all": [-1.0]}}, "finite numbers >= 0"),
    ({"gender_temperature_": 1.0, "age_conformity_scores_": {"0-2": [1.0]}}, "'all' required"),
    ({"gender_temperature_": 1.0, "age_conformity_scores_": [1.0]}, "'all' required"),
    ({"gender_temperature_": 1.0}, "come together"),
])
def test_a_tampered_calibration_is_refused(saved, tmp_path, change, message):
    with pytest.raises(PretrainedModelError, match=message):
        load_pretrained(tampered(saved, tmp_path, lambda s: s["fitted"].update(change)))


def test_a_fitted_attribute_with_an_entry_in_the_table_is_saved_checked_and_restored(pipeline, tmp_path, monkeypatch):
    from skface.network import persistence

    def temperature(value):
        if not (isinstance(value, float) and value > 0):
            raise ValueError(f"must be a positive float, got {value!r}")
        return np.float64(value)

    monkeypatch.setitem(persistence.FITTED_ATTRIBUTES, "new_scale_", (temperature, False))
    estimator = pipeline.named_steps["model"]
    estimator.new_scale_ = np.float32(1.5)
    try:
        folder = save_pretrained(pipeline, tmp_path / "m")
    finally:
        del estimator.new_scale_
    assert load_pretrained(folder).named_steps["model"].new_scale_ == 1.5
    with pytest.raises(PretrainedModelError, match="fitted.new_scale_: must be a positive float, got -1.0"):
        load_pretrained(tampered(folder, tmp_path, lambda s: s["fitted"].update(new_scale_=-1.0)))


def test_save_refuses_what_load_would_refuse(pipeline, tmp_path):
    unguarded = Pipeline([("preprocess", ImagePreprocessor(image_size=16, max_pixels=None)), pipeline.steps[-1]])
    with pytest.raises(ValueError, match=r"this pipeline cannot be saved as it is, since load_pretrained would "
                                         r"refuse it: preprocessor.max_pixels must be an integer"):
        save_pretrained(unguarded, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("damage, match", [
    (lambda data: data[: len(data) // 2], r"model.keras is not this model's network: it is not a Keras .keras file"),
    (lambda data: b"\x00garbage" * 100, r"model.keras is not this model's network: it is not a Keras .keras file"),
    (lambda data: _zip({"config.json": "{}"}), "it is a zip archive without model.weights.h5, so not a Keras"),
    (lambda data: _zip({"config.json": "[1]", "model.weights.h5": ""}),
     "its config.json is not a Keras functional model's"),
    (lambda data: _zip({**{n: zipfile.ZipFile(io.BytesIO(data)).read(n) for n in ("config.json", "metadata.json")},
                        "model.weights.h5": b"not hdf5"}), r"Keras cannot load .*model.keras"),
])
def test_a_damaged_network_file_is_named(saved, tmp_path, damage, match):
    folder = tampered(saved, tmp_path, network=damage((saved / "model.keras").read_bytes()))
    with pytest.raises(PretrainedModelError, match=match) as error:
        load_pretrained(folder)
    assert "File not found" not in str(error.value)


def test_an_int8_network_is_smaller_and_answers_nearly_the_same(pipeline, tmp_path):
    full = save_pretrained(pipeline, tmp_path / "float32")
    small = save_pretrained(pipeline, tmp_path / "int8", quantize="int8")
    assert (small / "model.keras").stat().st_size < (full / "model.keras").stat().st_size
    X = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1)).astype(np.uint8)
    before, after = load_pretrained(full)[-1].predict(X), load_pretrained(small)[-1].predict(X)
    assert np.allclose(after[:, 0], before[:, 0], atol=0.5)
    with zipfile.ZipFile(small / "model.keras") as archive:  # the layers say how they are stored
        assert '"int8"' in archive.read("config.json").decode()
    # The estimator keeps its float network.
    assert pipeline[-1].model_.get_layer(index=-1).dtype_policy.name != "int8"
    with pytest.raises(ValueError, match="quantize must be None or one of"):
        save_pretrained(pipeline, tmp_path / "x", quantize="int3")


def test_warm_start_is_saved_off_and_files_saved_before_it_existed_load(pipeline, tmp_path):
    pipeline[-1].set_params(warm_start=True)
    try:
        folder = save_pretrained(pipeline, tmp_path / "model")
    finally:
        pipeline[-1].set_params(warm_start=False)
    assert json.loads((folder / "skface.json").read_text())["estimator"]["warm_start"] is False
    old = tampered(folder, tmp_path, lambda s: s["estimator"].pop("warm_start"))
    assert load_pretrained(old)[-1].warm_start is False

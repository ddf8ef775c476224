"""The pyfunc model's request contract, in process."""

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image
from sklearn.pipeline import Pipeline

from skface import AgeGenderCNN, ImagePreprocessor, make_synthetic_faces
from skface.tracking.pyfunc import AgeGenderModel, encode_image
from tests.conftest import TINY


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def model(tiny_data):
    X, y = tiny_data
    pipeline = Pipeline([("preprocess", ImagePreprocessor(image_size=16, max_pixels=40_000)),
                         ("model", AgeGenderCNN(**TINY).fit(X, y))])
    return AgeGenderModel().use(pipeline)


@pytest.fixture(scope="module")
def faces():
    X, _ = make_synthetic_faces(3, image_size=48, color="rgb", random_state=3)
    return [_png(image) for image in X]


def test_good_rows_match_the_in_process_pipeline(model, faces):
    out = model.predict(None, pd.DataFrame({"image": [encode_image(f) for f in faces]}))
    expected = model.pipeline_.predict(faces)
    proba = model.pipeline_.predict_proba(faces)
    assert list(out.columns) == ["age", "age_low", "age_high", "gender", "gender_probability", "error", "faces"]
    assert list(out["age_low"]) == [None] * 3  # an uncalibrated model gives no age range
    np.testing.assert_allclose(out["age"].astype(float), expected[:, 0], rtol=1e-6)
    assert list(out["gender"]) == ["female" if g else "male" for g in expected[:, 1]]
    np.testing.assert_allclose(out["gender_probability"].astype(float), proba.max(axis=1), rtol=1e-6)
    assert list(out["error"]) == ["", "", ""]


def test_raw_bytes_and_data_urls(model, faces):
    data_url = "data:image/png;base64," + encode_image(faces[0])
    out = model.predict(None, pd.DataFrame({"image": [faces[0], data_url]}))
    assert out["age"][0] == pytest.approx(out["age"][1])


def test_bad_rows_are_flagged_and_the_rest_answered(model, faces):
    truncated = faces[0][: len(faces[0]) // 2]
    bomb = _png(np.zeros((300, 300), dtype=np.uint8))  # 90,000 pixels, over this model's 40,000
    rows = [encode_image(faces[0]), "not base64 at all!", encode_image(b"plain text"), encode_image(truncated),
            "", None, encode_image(bomb), 42, encode_image(faces[1])]
    out = model.predict(None, pd.DataFrame({"image": rows}))
    errors = list(out["error"])
    assert errors[0] == "" and errors[-1] == ""
    assert "not valid base64" in errors[1]
    assert "not an image" in errors[2]
    assert "corrupt or truncated" in errors[3]
    assert "empty" in errors[4] and "empty" in errors[5]
    assert "over the limit" in errors[6]
    assert "expected a base64 string or bytes" in errors[7]
    assert all(out["age"][1:8].isna()) and all(out["gender"][1:8].isna())
    assert out["age"][8] > 0


def test_missing_image_column_is_a_bad_request(model):
    with pytest.raises(MlflowException, match="no 'image' column") as info:
        model.predict(None, pd.DataFrame({"picture": ["x"]}))
    assert info.value.get_http_status_code() == 400


def test_dict_and_list_inputs(model, faces):
    encoded = base64.b64encode(faces[2]).decode()
    assert len(model.predict(None, {"image": [encoded, encoded]})) == 2
    assert len(model.predict(None, [encoded])) == 1


def test_rows_beyond_the_request_limits_get_an_error_each(model, faces):
    small = _png(np.zeros((16, 16), dtype=np.uint8))
    huge = _png(np.zeros((100, 100), dtype=np.uint8))
    limited = AgeGenderModel().use(model.pipeline_, limits={"max_rows": 5, "max_request_pixels": 5000})
    # 48x48 faces are 2,304 pixels each: two fit in 5,000, the third does not; 256 more still fit.
    rows = [faces[0], faces[1], faces[2], huge, small, faces[0], faces[1]]
    out = limited.predict(None, pd.DataFrame({"image": [encode_image(row) for row in rows]}))
    errors = list(out["error"])
    assert errors[0] == errors[1] == errors[4] == ""
    assert errors[2] == ("not answered: its 2,304 pixels are over the 392 left of the 5,000 decoded at most at a "
                         "time; send it again on its own or in a smaller batch.")
    assert errors[3] == "not answered: its 10,000 pixels are over the 5,000 decoded at most at a time; downscale it."
    assert errors[5] == ("not answered: at most 5 images are answered at a time, and this is image 6 of 7; send it "
                         "again on its own or in a smaller batch.")
    assert errors[6].startswith("not answered: at most 5 images")
    assert out["age"][4] > 0 and all(out["age"][[2, 3, 5, 6]].isna())
    # The answered rows are those of an unlimited model.
    np.testing.assert_allclose(out["age"][[0, 1, 4]].astype(float),
                               model.predict(None, pd.DataFrame({"image": [rows[i] for i in (0, 1, 4)]}))["age"]
                               .astype(float), rtol=1e-6)


def test_the_default_request_limits_and_their_checks(model):
    from skface.tracking.pyfunc import REQUEST_LIMITS

    assert model.limits_ == REQUEST_LIMITS == {"max_rows": 256, "max_request_pixels": 100_000_000}
    assert AgeGenderModel().use(model.pipeline_, limits={"max_rows": 8, "other": 1}).limits_ == {
        "max_rows": 8, "max_request_pixels": 100_000_000}
    for bad in (0, "8", 2.5, True):
        with pytest.raises(ValueError, match=r"the served model's max_rows must be a positive integer, got "
                                             r".*; set it with MLFLOW_PYFUNC_INFERENCE_CONFIG='\{\"max_rows\": 256\}'"):
            AgeGenderModel().use(model.pipeline_, limits={"max_rows": bad})


def test_a_failure_of_the_whole_request_is_answered_without_a_trace(model, faces, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("/home/secret/site-packages/skface: out of luck")

    monkeypatch.setattr("skface.tracking.pyfunc.predict_rows", broken)
    with pytest.raises(MlflowException) as info:
        model.predict(None, pd.DataFrame({"image": [encode_image(faces[0])]}))
    body = info.value.serialize_as_json()
    assert info.value.get_http_status_code() == 500
    assert "stack_trace" not in body and "secret" not in body
    assert "the model failed on this request (RuntimeError); the server's log has the details" in body


def test_base64_with_line_breaks(model, faces):
    """``base64`` without ``-w0`` and Spark's ``base64()`` break lines every 76 characters (LF or CRLF)."""
    wrapped = base64.encodebytes(faces[0]).decode()
    assert "\n" in wrapped.strip()
    rows = [encode_image(faces[0]), wrapped, wrapped.replace("\n", "\r\n")]
    out = model.predict(None, pd.DataFrame({"image": rows}))
    assert list(out["error"]) == ["", "", ""]
    assert out["age"][1] == out["age"][0] and out["age"][2] == out["age"][0]


def test_models_as_mlflow_loads_them(model, tmp_path, monkeypatch):
    from skface import ModelNotFoundError, save_pretrained
    from skface.tracking.pyfunc import as_mlflow_model, save_model

    assert as_mlflow_model("models:/skface@champion", tmp_path / "a") == "models:/skface@champion"
    mlflow_folder = save_model(model.pipeline_, tmp_path / "mlflow-model")
    assert as_mlflow_model(mlflow_folder, tmp_path / "b") == str(mlflow_folder) and not (tmp_path / "b").exists()
    saved = save_pretrained(model.pipeline_, tmp_path / "saved")
    written = as_mlflow_model(saved, tmp_path / "c")
    assert written == str(tmp_path / "c") and (tmp_path / "c" / "MLmodel").is_file()
    monkeypatch.setattr("skface.network.persistence.default_pretrained_dir", lambda: saved)
    assert (Path(as_mlflow_model(None, tmp_path / "d")) / "MLmodel").is_file()
    with pytest.raises(ModelNotFoundError, match="'no-such-model' is neither a saved model folder .* nor an MLflow "
                                                 r"model URI \(models:/NAME@ALIAS"):
        as_mlflow_model("no-such-model", tmp_path / "e")

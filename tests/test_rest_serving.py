"""`mlflow models serve` for real: a model trained in the test, served on loopback, sent good and bad images."""

import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image
from sklearn.pipeline import Pipeline

from skface import AgeGenderCNN, ImagePreprocessor, make_synthetic_faces
from skface.tracking.pyfunc import encode_image, log_model
from skface.tracking.servers import free_port, wait_until_up

pytestmark = pytest.mark.slow


def _post(url: str, body) -> tuple[int, dict]:
    status, raw = _post_raw(url, body)
    return status, json.loads(raw or b"{}")


def _post_raw(url: str, body) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    X, y = make_synthetic_faces(120, image_size=16, random_state=0)
    pipeline = Pipeline([("preprocess", ImagePreprocessor(image_size=16)),
                         ("model", AgeGenderCNN(filters=(4, 8), dense_units=8, epochs=2, verbose=0,
                                                random_state=0).fit(X, y))])
    mlflow.set_experiment("serve-test")
    with mlflow.start_run():
        info = log_model(pipeline)
    port = free_port()
    # The request limits are the logged model's configuration, which the server's environment overrides.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
           "MLFLOW_PYFUNC_INFERENCE_CONFIG": json.dumps({"max_rows": 6, "max_request_pixels": 20_000}),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(folder / "serve.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", info.model_uri, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_up(f"{url}/ping", server, timeout=180):
            log.flush()
            pytest.fail(f"mlflow models serve did not start: {(folder / 'serve.log').read_text()[-3000:]}")
        yield url, pipeline
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # set by mlflow.set_experiment above


def _jpeg(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_served_model_answers_good_rows_and_flags_bad_ones(served):
    url, pipeline = served
    X, _ = make_synthetic_faces(2, image_size=64, color="rgb", random_state=9)
    good = [_jpeg(image) for image in X]
    rows = [encode_image(good[0]), "%%% not base64", encode_image(b"just text"),
            encode_image(good[1][: len(good[1]) // 3]), encode_image(good[1])]
    status, body = _post(f"{url}/invocations", {"dataframe_split": {"columns": ["image"], "data": [[r] for r in rows]}})
    assert status == 200, body
    predictions = body["predictions"]
    assert [bool(p["error"]) for p in predictions] == [False, True, True, True, False]
    expected = pipeline.predict(good)
    assert predictions[0]["age"] == pytest.approx(expected[0, 0], rel=1e-5)
    assert predictions[4]["gender"] == ("female" if expected[1, 1] else "male")
    assert predictions[1]["age"] is None

    # Other request formats carry the same rows.
    status, body = _post(f"{url}/invocations", {"dataframe_records": [{"image": rows[0]}]})
    assert status == 200 and body["predictions"][0]["age"] == pytest.approx(predictions[0]["age"])
    status, body = _post(f"{url}/invocations", {"inputs": {"image": [rows[4]]}})
    assert status == 200 and body["predictions"][0]["age"] == pytest.approx(predictions[4]["age"])


def test_malformed_requests_get_400_without_a_trace_and_the_server_stays_up(served):
    url, _ = served
    status, raw = _post_raw(f"{url}/invocations", {"dataframe_split": {"columns": ["picture"], "data": [["x"]]}})
    assert status == 400 and "image" in json.loads(raw)["message"]
    # MLflow checks the signature (the image column, the crops parameter) and parses the body before the model
    # sees it, and quotes what it got in its message (see the README's deployment notes); never a trace.
    for body in ({"inputs": {"image": ["x"]}, "params": {"crops": "yes"}}, b"this is not json",
                 b"\xff\xfe not UTF-8 \x80"):
        status, raw = _post_raw(f"{url}/invocations", body)
        assert status == 400 and b"stack_trace" not in raw, raw[:1000]
    X, _ = make_synthetic_faces(1, image_size=32, color="rgb", random_state=1)
    status, body = _post(f"{url}/invocations", {"dataframe_split": {"columns": ["image"],
                                                                    "data": [[encode_image(_jpeg(X[0]))]]}})
    assert status == 200 and body["predictions"][0]["error"] == ""
    assert np.isfinite(body["predictions"][0]["age"])


def test_a_request_costs_at_most_its_limits(served):
    url, pipeline = served
    X, _ = make_synthetic_faces(2, image_size=64, color="rgb", random_state=9)
    face, large = _jpeg(X[0]), _jpeg(np.asarray(Image.fromarray(X[1]).resize((100, 100))))
    small = _jpeg(np.asarray(Image.fromarray(X[1]).resize((32, 32))))
    # Within 6 rows and 20,000 pixels: 64x64 (4,096), 100x100 (14,096 so far), 64x64 (18,192), then a 64x64
    # does not fit, a 32x32 does (19,216); the 6th row does not fit either, and the 7th is over the rows.
    rows = [face, large, face, face, small, face, face]
    status, body = _post(f"{url}/invocations", {"inputs": {"image": [encode_image(row) for row in rows]}})
    assert status == 200, body
    errors = [row["error"] for row in body["predictions"]]
    assert [bool(error) for error in errors] == [False, False, False, True, False, True, True]
    assert errors[3].startswith("not answered: its 4,096 pixels are over the 1,808 left of the 20,000")
    assert errors[6].startswith("not answered: at most 6 images are answered at a time, and this is image 7 of 7")
    assert body["predictions"][4]["age"] == pytest.approx(pipeline.predict([small])[0, 0], rel=1e-5)


def test_skface_serve_serves_the_pretrained_model_in_one_command(tmp_path):
    """`skface serve` answers every face of a photo, as the shipped pipeline does in process."""
    from skface import load_pretrained
    from skface.network.pipeline import predict_rows

    astronaut = (Path(__file__).with_name("data") / "astronaut.jpg").read_bytes()
    pair = Image.new("RGB", (1024, 512), (120, 120, 120))
    pair.paste(Image.open(io.BytesIO(astronaut)), (0, 0))
    pair.paste(Image.open(io.BytesIO(astronaut)), (512, 0))
    photos = [_jpeg(np.asarray(pair)), _jpeg(np.full((240, 320, 3), 255, dtype=np.uint8))]
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "skface.cli", "serve", "--port", str(port),
                                   "--save", str(tmp_path / "mlflow-model")],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_until_up(f"http://127.0.0.1:{port}/ping", server, timeout=180), \
                (tmp_path / "serve.log").read_text()[-3000:]
            url = f"http://127.0.0.1:{port}/invocations"
            status, body = _post(url, {"inputs": {"image": [encode_image(p) for p in photos]}})
            assert status == 200, body
            pair_row, white_row = body["predictions"]
            expected = predict_rows(load_pretrained(), photos)[0]
            assert len(pair_row["faces"]) == 2 and not pair_row["error"]
            assert pair_row["age"] == pytest.approx(expected["age"], rel=1e-5)
            assert [f["box"] for f in pair_row["faces"]] == [f["box"] for f in expected["faces"]]
            assert white_row["age"] is None and white_row["error"].startswith("no face found")
            # The request can say that its images are tight crops: then no face is looked for.
            status, body = _post(url, {"inputs": {"image": [encode_image(photos[1])]}, "params": {"crops": True}})
            assert status == 200 and body["predictions"][0]["error"] == "", body
            assert body["predictions"][0]["faces"][0]["box"] is None
        finally:
            server.terminate()
            server.wait(timeout=60)
    # The server went down with the command, and the model folder it served was kept as asked.
    assert (tmp_path / "mlflow-model" / "MLmodel").is_file()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
    # A logged model carries its own network only, not a second copy of the package's pretrained weights.
    assert len(list((tmp_path / "mlflow-model").rglob("model.keras"))) == 1

"""The benchmark scripts, as quick dry runs on synthetic faces, and the measuring helpers they use."""

import base64
import http.server
import io
import json
import re
import threading

import pytest

from skface.configurations import CONFIGURATIONS, get_configuration
from skface.tracking.scoring_requests import request_body, send_requests

from .scripts import load_script


def test_seed_configuration_is_the_seed():
    seed = get_configuration("seed")
    assert (seed["image_size"], seed["color"]) == (128, "grayscale")
    assert seed["estimator"]["architecture"] == "seed" and seed["estimator"]["epochs"] == 30
    seed["estimator"]["epochs"] = 1
    assert CONFIGURATIONS["seed"]["estimator"]["epochs"] == 30  # a copy, not the registry itself


@pytest.mark.parametrize("option", ["--rounds", "--repeats"])
def test_benchmark_needs_at_least_one_timing(option, capsys):
    with pytest.raises(SystemExit):
        load_script("benchmark").parse_args([option, "0"])
    assert "--rounds and --repeats must be at least 1" in capsys.readouterr().err


def test_unknown_configuration():
    with pytest.raises(ValueError, match="unknown configuration 'best'; choose from"):
        get_configuration("best")


def test_a_configuration_that_fine_tunes_another_is_refused_before_any_training():
    with pytest.raises(SystemExit, match="narrow80tuned fine-tunes a model of narrow80all, which the benchmark does "
                                         "not train"):
        load_script("benchmark").main(["--data", "synthetic", "--configs", "seed,narrow80tuned"])


@pytest.mark.slow
def test_benchmark_prints_configurations_side_by_side(capsys):
    assert load_script("benchmark").main(["--data", "synthetic", "--n-synthetic", "60", "--epochs", "1",
                           "--configs", "seed,narrow80fast", "--serve", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    header = [line for line in out.splitlines() if line.strip().startswith("seed")][-1]
    assert header.split() == ["seed", "narrow80fast"]
    assert "age MAE (years)" in out and "seconds per epoch" in out and "60plus age MAE" in out
    assert "Keras predict, 1 view img/s" in out and "Keras predict img/s vs seed" in out
    rows = {line[:26].strip(): line[26:].split() for line in out.splitlines() if len(line) > 26}
    for row in ("1 image, pipeline (ms)", "1 image, served p50 (ms)", "inference images/s"):
        assert all(float(v) > 0 for v in rows[row]), (row, rows[row])
    # Ratios against the first configuration: the first column is 1 by construction.
    assert rows["train time vs seed"][0] == "1.00x"
    assert rows["1 image, served vs seed"][0] == "1.00x" and rows["1 image, served vs seed"][1].endswith("x")


def test_forward_flops_counts_convolutions_and_trained_dense_layers():
    import keras

    from skface.network.measure import forward_flops

    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 6 x 6 outputs x (3 x 3 x 2 x 4) multiply-adds
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(8, 1)(x)  # 3 x 3 outputs x (1 x 1 x 4 x 8)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5)(x)  # 72 x 5
    frozen = keras.layers.Dense(1, trainable=False)  # a fixed read-out, as the DEX head's expectation: not counted
    model = keras.Model(inputs, frozen(x))
    assert forward_flops(model) == 2 * (36 * 72 + 9 * 32 + 72 * 5)


def test_matmul_gflops_is_a_positive_rate():
    from skface.network.measure import matmul_gflops

    assert matmul_gflops("float32", size=64, repeats=2) > 0


def test_request_body_is_one_jpeg_in_the_served_models_format():
    from PIL import Image

    body, jpeg = request_body(48)
    request = json.loads(body)
    assert request["dataframe_split"]["columns"] == ["image"]
    [[encoded]] = request["dataframe_split"]["data"]
    assert base64.b64decode(encoded) == jpeg
    with Image.open(io.BytesIO(jpeg)) as image:
        assert (image.format, image.size) == ("JPEG", (48, 48))


class _ScoringStub(http.server.BaseHTTPRequestHandler):
    """Answers like the served model: the request's ``error`` field (empty means a good row)."""

    def do_POST(self):
        error = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["error"]
        answer = json.dumps({"predictions": [{"age": 30.0, "error": error}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def stub_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ScoringStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/invocations"
    server.shutdown()
    server.server_close()


def test_send_requests_stops_at_max_requests_and_counts_errors(stub_url):
    good, bad = json.dumps({"error": ""}).encode(), json.dumps({"error": "not an image"}).encode()
    latencies, errors, wall = send_requests(stub_url, good, clients=3, seconds=30.0, max_requests=7)
    assert len(latencies) == 7 and errors == 0 and all(0 < t <= wall for t in latencies)
    latencies, errors, _ = send_requests(stub_url, bad, clients=2, seconds=30.0, max_requests=4)
    assert len(latencies) == 4 and errors == 4  # answered 200, but every row flagged


def test_send_requests_stops_after_its_time():
    # Nothing listens on the port: every request fails at once, and the clients stop when the time is up.
    from skface.tracking.servers import free_port

    latencies, errors, wall = send_requests(f"http://127.0.0.1:{free_port()}/invocations", b"{}", clients=2,
                                            seconds=0.3, max_requests=10**9)
    assert 0 < len(latencies) == errors and 0.3 <= wall < 5


@pytest.mark.slow
def test_training_benchmark_prints_both_pipelines_and_the_ratio(capsys):
    module = load_script("bench_training")
    assert module.main(["--data", "synthetic", "--config", "narrow80", "--n-images", "64", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith(("keras numpy", "skface"))}
    assert set(rows) == {"keras numpy", "skface array_dataset"}
    assert "1.00x" in rows["keras numpy"]  # the baseline against itself
    assert len(rows["skface array_dataset"].split("x   ")[1].split()) == 2  # one figure per timed epoch
    # The figures against the machine: narrow80's forward pass, about 114 MFLOP at 80 px, and positive rates.
    assert "network: 114 MFLOP per image forward, about 341 to train on it" in out
    step = next(line for line in out.splitlines() if line.startswith("training step"))
    step_rate, peak = (float(v) for v in re.findall(r"(\d+) GFLOP/s", step))
    ratio = float(re.search(r"at ([\d.]+)x of it", step).group(1))
    assert "bfloat16 matrix product" in step and step_rate > 0 and peak > 0, step
    assert ratio == pytest.approx(step_rate / peak, abs=0.01), step

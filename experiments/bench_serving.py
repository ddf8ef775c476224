"""Benchmark the served model: `mlflow models serve` on loopback under concurrent clients.

Starts the scoring server for a model URI on 127.0.0.1, sends one-image
requests from N concurrent clients for a bounded time and number of requests,
and prints throughput, latency percentiles, errors and the server's peak
memory. Beside it, measured in the same run on the same model: in-process
`predict` throughput on batches, and one image through the pipeline.

Without --model-uri, a model with the estimator's default parameters is
trained for one epoch on synthetic faces and logged to a temporary MLflow
store, so the benchmark runs on a fresh machine.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from skface.cli.options import whole_number
from skface.quiet import import_tensorflow_quietly
from skface.tracking.servers import scoring_server


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-uri", default=None,
                        help="MLflow model URI to serve (uses MLFLOW_TRACKING_URI); default: train a quick one")
    parser.add_argument("--clients", type=whole_number, default=4, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the clients send requests")
    parser.add_argument("--max-requests", type=whole_number, default=5000, help="stop after this many requests")
    parser.add_argument("--workers", type=whole_number, default=1, help="scoring server workers")
    parser.add_argument("--image-size", type=whole_number, default=200, help="side of the JPEG sent per request")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for the server")
    return parser.parse_args(argv)


def _quick_model(folder: Path) -> str:
    import mlflow
    from sklearn.pipeline import Pipeline

    from skface import AgeGenderCNN, ImagePreprocessor, make_synthetic_faces
    from skface.tracking.pyfunc import log_model

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    os.environ["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    X, y = make_synthetic_faces(500, random_state=0)
    estimator = AgeGenderCNN(epochs=1, verbose=0, random_state=0).fit(X, y)
    pipeline = Pipeline([("preprocess", ImagePreprocessor()), ("model", estimator)])
    mlflow.set_experiment("bench-serving")
    with mlflow.start_run():
        return log_model(pipeline).model_uri


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.Error:
        return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    import_tensorflow_quietly()

    from skface.tracking.pyfunc import load_estimator
    from skface.tracking.scoring_requests import request_body, send_requests

    with tempfile.TemporaryDirectory() as tmp:
        model_uri = args.model_uri or _quick_model(Path(tmp))
        body, jpeg = request_body(args.image_size)

        # Baseline, in process: the same model, loaded the same way the server loads it.
        pipeline = load_estimator(model_uri)
        estimator = pipeline.steps[-1][1]
        batch = pipeline.steps[0][1].transform([jpeg] * 512)
        estimator.predict(batch)  # warm up both paths: model.predict for batches,
        estimator.predict(batch[:1])  # a direct call for a few images
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            estimator.predict(batch)
            rates.append(len(batch) / (time.perf_counter() - start))
        batch_rate = statistics.median(rates)
        single = []
        for _ in range(50):
            start = time.perf_counter()
            pipeline.predict([jpeg])
            single.append(time.perf_counter() - start)

        peak = [0]
        watching = threading.Event()
        try:
            with scoring_server(model_uri, Path(tmp) / "server.log", workers=args.workers,
                                timeout=args.startup_timeout) as (url, server):

                def watch():
                    while not watching.is_set():
                        peak[0] = max(peak[0], _tree_rss(server.pid))
                        time.sleep(0.2)

                threading.Thread(target=watch, daemon=True).start()
                # One request alone first: the end-to-end latency of a single image on an idle server.
                alone, _, _ = send_requests(f"{url}/invocations", body, clients=1, seconds=5.0, max_requests=50)
                latencies, errors, wall = send_requests(f"{url}/invocations", body, clients=args.clients,
                                                        seconds=args.seconds, max_requests=args.max_requests)
        except RuntimeError as exc:
            raise SystemExit(f"bench_serving: {exc}") from None
        finally:
            watching.set()

    ms = 1000.0
    # Each percentile is the nearest observation: a latency that some request really took.
    p95_alone = np.percentile(alone, 95, method="nearest")
    percentiles = {q: np.percentile(latencies, q, method="nearest") for q in (50, 95, 99)}
    print(f"\nModel {model_uri}; {args.image_size}px JPEG per request; {os.cpu_count()} CPUs")
    print(f"{'':<44}{'value':>12}")
    print(f"{'in-process predict, batch of 512 (images/s)':<44}{batch_rate:>12.0f}")
    print(f"{'in-process pipeline, 1 image p50 (ms)':<44}{statistics.median(single) * ms:>12.2f}")
    print(f"{'served, 1 client, 1 image p50 (ms)':<44}{statistics.median(alone) * ms:>12.2f}")
    print(f"{'served, 1 client, 1 image p95 (ms)':<44}{p95_alone * ms:>12.2f}")
    print(f"{f'served, {args.clients} clients: requests':<44}{len(latencies):>12d}")
    print(f"{f'served, {args.clients} clients: throughput (img/s)':<44}{len(latencies) / wall:>12.1f}")
    for q, value in percentiles.items():
        print(f"{f'served, {args.clients} clients: p{q} (ms)':<44}{value * ms:>12.2f}")
    print(f"{'served: errors':<44}{errors:>12d}")
    print(f"{'server peak memory (MiB, process tree)':<44}{peak[0] / 2**20:>12.0f}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

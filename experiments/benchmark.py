"""Train named configurations on the same split of a UTKFace folder and print their figures side by side.

Each configuration (see skface.configurations: "seed" is the seed-faithful
baseline) is trained on the same documented split: 80/20, stratified by age
band and gender, with a fixed seed. Printed per configuration: age MAE, CS@5,
gender accuracy, per-age-band figures, and the speed figures of issue 6:
training minutes and seconds per epoch; in-process batch inference in
images/s, through the estimator (with its test-time views) and through the
bare network with Keras's ``model.predict``, as the seed predicted; one 200 px
JPEG through the fitted pipeline's ``predict`` (median ms) and, with --serve,
one image over HTTP through ``mlflow models serve`` on loopback (median ms,
end to end). Ratios against the first configuration, measured in the same
run, close the table.

The prediction figures are measured once every configuration is trained, in
rounds that go through all configurations in turn (all servers up at once),
each figure the median over the rounds: a slow spell of the host, which can
last minutes, then lands on every configuration instead of one.
"""

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from skface.cli.options import boolean, whole_number
from skface.quiet import import_tensorflow_quietly


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="../shared/data/utkface-crop_part1",
                        help="UTKFace folder or archive ('synthetic' for a dry run)")
    parser.add_argument("--configs", default="seed,narrow80",
                        help="comma-separated configuration names (the first is the baseline of the ratios)")
    parser.add_argument("--extra-data", default="../shared/data/utkface-extra",
                        help="more UTKFace faces for training, given to the configurations that balance age bands "
                             "(v2) and to those named in --extra-for; the test faces stay --data's")
    parser.add_argument("--extra-for", default="",
                        help="comma-separated configurations that also train on --extra-data")
    parser.add_argument("--epochs", type=whole_number, default=0,
                        help="override every configuration's epochs (for a quick look); 0 keeps them")
    parser.add_argument("--test-split", type=float, default=0.2, help="held-out share")
    parser.add_argument("--seed", type=whole_number, default=0, help="seed of the split and of training")
    parser.add_argument("--n-synthetic", type=whole_number, default=2000, help="faces, with --data synthetic")
    parser.add_argument("--serve", type=boolean, nargs="?", const=True, default=False,
                        help="also serve each fitted pipeline with `mlflow models serve` and time one-image requests")
    parser.add_argument("--repeats", type=whole_number, default=50,
                        help="timed one-image predictions and requests, per round")
    parser.add_argument("--rounds", type=whole_number, default=3,
                        help="rounds of prediction timings, each through every configuration in turn")
    args = parser.parse_args(argv)
    args.extra_for = {name.strip() for name in args.extra_for.split(",") if name.strip()}
    args.extra_data = [] if args.data == "synthetic" else [args.extra_data]
    if args.rounds < 1 or args.repeats < 1:
        parser.error(f"--rounds and --repeats must be at least 1 (got {args.rounds} and {args.repeats}): "
                     "every figure is a median of timings")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import_tensorflow_quietly()
    import numpy as np
    from sklearn.pipeline import Pipeline

    from skface import AgeGenderCNN, ImagePreprocessor
    from skface.configurations import get_configuration
    from skface.evaluation import AGE_BANDS, evaluate
    from skface.network.pipeline import held_out_answers, training_data
    from skface.tracking.scoring_requests import request_body

    body, jpeg = request_body(200)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    configs = {name: get_configuration(name) for name in names}
    for name, config in configs.items():
        if config["init"]:
            raise SystemExit(f"benchmark.py: {name} fine-tunes a model of {config['init']}, which the benchmark does "
                             f"not train; benchmark {config['init']}, or train {name} with skface train --init-model.")
    results, fitted = {}, {}
    for name, config in configs.items():
        # The configuration's own data options (a calibration split, balanced bands), and the extra sources
        # for those that take them: the test faces are the same for all.
        data_options = dict(config["data"])
        if data_options.get("balance_age_bands") or name in args.extra_for:
            data_options["extra_data"] = args.extra_data
        split = training_data(data=args.data, test_split=args.test_split, seed=args.seed,
                              image_size=config["image_size"], color=config["color"],
                              n_synthetic=args.n_synthetic, **data_options)
        params = {**config["estimator"], "random_state": args.seed}
        if args.epochs:
            params["epochs"] = args.epochs
        estimator = AgeGenderCNN(**params)
        print(f"\n== {name}: {config['image_size']} px {config['color']}, {params}, {data_options}", flush=True)
        start = time.perf_counter()
        estimator.fit(split.X_train, split.y_train)
        seconds = time.perf_counter() - start
        if len(split.X_calibration):
            estimator.conformalize(split.X_calibration, split.y_calibration)
        X_test = split.X_test
        y_pred, proba, intervals = held_out_answers(estimator, X_test)
        figures = evaluate(split.y_test, y_pred, proba, race=split.race_test, intervals=intervals)
        figures.update(train_seconds=seconds, seconds_per_epoch=seconds / estimator.n_epochs_,
                       epochs=estimator.n_epochs_)
        results[name] = figures
        pipeline = Pipeline([("preprocess", ImagePreprocessor(image_size=config["image_size"], color=config["color"])),
                             ("model", estimator)])
        fitted[name] = (estimator, X_test, pipeline)

    print(f"\nTiming predictions: {args.rounds} rounds through {', '.join(fitted)}", flush=True)
    timings = {name: {} for name in fitted}
    with contextlib.ExitStack() as stack:
        urls = {}
        if args.serve:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            urls = {name: _serve(stack, pipeline, folder, name) for name, (_, _, pipeline) in fitted.items()}
        for name, (estimator, X_test, _) in fitted.items():  # warm-up
            estimator.predict(X_test[:256])
            estimator.model_.predict(np.asarray(X_test[:256], dtype=np.float32), batch_size=256, verbose=0)
        for _ in range(args.rounds):
            for name, (estimator, X_test, pipeline) in fitted.items():
                timing = {"images_per_second": _predict_rate(estimator, X_test),
                          "keras_images_per_second": _keras_predict_rate(estimator, X_test),
                          "one_image_ms": _one_image_ms(pipeline, jpeg, args.repeats)}
                if name in urls:
                    timing["served_ms"] = _served_ms(urls[name], body, args.repeats)
                for key, value in timing.items():
                    timings[name].setdefault(key, []).append(value)
    for name, rounds in timings.items():
        results[name].update({key: statistics.median(values) for key, values in rounds.items()})

    width = 14
    print(f"\n{'':<26}" + "".join(f"{n:>{width}}" for n in results))
    rows = [("age MAE (years)", "age_mae", ".2f"), ("CS@5", "cs5", ".3f"), ("gender accuracy", "gender_accuracy", ".3f"),
            ("gender ROC AUC", "gender_roc_auc", ".3f"), ("gender ECE", "gender_ece", ".3f"),
            ("80% range coverage", "interval_coverage", ".3f"), ("80% range width", "interval_width", ".1f"),
            ("epochs", "epochs", ".0f"),
            ("train minutes", "train_seconds", ".1f"), ("seconds per epoch", "seconds_per_epoch", ".1f"),
            ("inference images/s", "images_per_second", ".0f"),
            ("Keras predict, 1 view img/s", "keras_images_per_second", ".0f"),
            ("1 image, pipeline (ms)", "one_image_ms", ".2f"),
            ("1 image, served p50 (ms)", "served_ms", ".2f")]
    for label, key, fmt in rows:
        cells = []
        for figures in results.values():
            value = figures.get(key, float("nan"))
            value = value / 60 if key == "train_seconds" else value
            cells.append(f"{value:>{width}{fmt}}")
        print(f"{label:<26}" + "".join(cells))
    for band, _, _ in AGE_BANDS:
        for label, key in (("age MAE", f"age_mae_{band}"), ("gender acc", f"gender_accuracy_{band}")):
            cells = "".join(f"{figures.get(key, float('nan')):>{width}.3f}" for figures in results.values())
            print(f"{band + ' ' + label:<26}{cells}")
    first = next(iter(results))
    for label, key in (("train time", "train_seconds"), ("inference images/s", "images_per_second"),
                       ("Keras predict img/s", "keras_images_per_second"),
                       ("1 image, pipeline", "one_image_ms"), ("1 image, served", "served_ms")):
        base = results[first].get(key, float("nan"))
        cells = "".join(f"{figures.get(key, float('nan')) / base:>{width - 1}.2f}x" for figures in results.values())
        print(f"{label + ' vs ' + first:<26}{cells}")
    return 0


def _predict_rate(estimator, X) -> float:
    """Images/s of one ``predict_with_proba`` pass over ``X`` (with the estimator's test-time views)."""
    start = time.perf_counter()
    estimator.predict_with_proba(X)
    return len(X) / (time.perf_counter() - start)


def _keras_predict_rate(estimator, X) -> float:
    """Images/s of the bare network through Keras's ``model.predict`` (batches of 256, no test-time views).

    The way the seed predicted, and the baseline of skface's compiled path, which also averages the views.
    """
    import numpy as np

    X = np.asarray(X, dtype=np.float32)
    start = time.perf_counter()
    estimator.model_.predict(X, batch_size=256, verbose=0)
    return len(X) / (time.perf_counter() - start)


def _one_image_ms(pipeline, jpeg: bytes, repeats: int) -> float:
    """Median milliseconds of ``pipeline.predict([jpeg])`` after two warm-up calls."""
    for _ in range(2):
        pipeline.predict([jpeg])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pipeline.predict([jpeg])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _serve(stack: contextlib.ExitStack, pipeline, folder: Path, name: str) -> str:
    """Log ``pipeline`` to a tracking store in ``folder`` and serve it with ``mlflow models serve`` until ``stack``
    closes; the server's URL."""
    import mlflow

    from skface.tracking.pyfunc import log_model
    from skface.tracking.servers import scoring_server

    previous = mlflow.get_tracking_uri()
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    try:
        mlflow.set_experiment("benchmark-serving")
        with mlflow.start_run(run_name=name):
            model_uri = log_model(pipeline).model_uri
    finally:
        mlflow.set_tracking_uri(previous)
    url, _ = stack.enter_context(scoring_server(model_uri, folder / f"{name}-server.log", tracking_uri=tracking_uri))
    return url


def _served_ms(url: str, body: bytes, repeats: int) -> float:
    """Median milliseconds of one-image requests to the scoring server at ``url``, one at a time."""
    from skface.tracking.scoring_requests import send_requests

    send_requests(f"{url}/invocations", body, clients=1, seconds=5.0, max_requests=5)  # warm-up
    latencies, errors, _ = send_requests(f"{url}/invocations", body, clients=1, seconds=120.0, max_requests=repeats)
    if errors:
        raise RuntimeError(f"{errors} of {len(latencies)} requests to the scoring server at {url} failed.")
    return 1000 * statistics.median(latencies)


if __name__ == "__main__":
    sys.exit(main())

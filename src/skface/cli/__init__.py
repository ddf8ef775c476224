"""The ``skface`` command line: train a model and predict with it."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from .. import __version__


def _train_parser(sub) -> None:
    from .options import (
        add_configuration_argument,
        add_data_arguments,
        add_estimator_arguments,
        add_init_model_argument,
    )

    p = sub.add_parser(
        "train",
        help="train AgeGenderCNN and report held-out figures",
        description=(
            "Train AgeGenderCNN on a UTKFace folder or archive (found under ./data/ by default) or on "
            "synthetic faces, evaluate it on a held-out split beside a baseline, and optionally save it. "
            "The same training as `mlflow run .` (experiments/train.py), without MLflow."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(p)
    add_estimator_arguments(p)
    add_configuration_argument(p)
    add_init_model_argument(p)
    p.add_argument("--save", type=Path, default=None, help="folder to save the fitted pipeline to (see load_pretrained)")
    p.set_defaults(func=_train, parser=p)


def _predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict age and gender for image files or folders",
        description=(
            "Predict age and gender for every face in image files, or in every file of the given folders "
            "(recursively): one line per face, with its box (x, y, width, height in pixels), the detector's "
            "confidence, age with the range that holds the true age 80% of the time (JSON: age_low, age_high), "
            "gender and P(gender), the probability of that gender (0.5 to 1; JSON: "
            "gender_probability). Unreadable or missing files, files "
            "with no face and empty folders are reported and the other files answered; the exit status is 1 "
            "if any was."
        ),
    )
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders of images")
    p.add_argument(
        "--model",
        default=None,
        help="a folder saved by `skface train --save`, or an MLflow model URI such as "
        "models:/skface@champion or runs:/<run_id>/model; default: the pretrained model",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per face instead of a table")
    p.add_argument("--crops", action="store_true",
                   help="the images are tight face crops already: answer each whole, without looking for faces")
    p.add_argument("--annotate", type=Path, default=None, metavar="DIR",
                   help="also write each image with its faces' boxes and labels into this folder")
    p.add_argument("--batch-size", type=int, default=256, help="images decoded and predicted at a time")
    p.set_defaults(func=_predict)


def _serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over REST with `mlflow models serve` (by default the pretrained model)",
        description=(
            "Write the model as an MLflow model folder and serve it with `mlflow models serve --env-manager "
            "local`: POST base64 images to /invocations (see the README's serving section)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default=None,
                   help="a folder saved by `skface train --save`, an MLflow model folder, or an MLflow model URI; "
                        "default: the pretrained model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=5001, help="port to listen on")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own copy of the model")
    p.add_argument("--save", type=Path, default=None,
                   help="also keep the MLflow model folder here (it must not exist), e.g. to serve it with "
                        "`mlflow models serve -m DIR` later")
    p.set_defaults(func=_serve)


def _score_spark_parser(sub) -> None:
    p = sub.add_parser(
        "score-spark",
        help="score a folder or glob of images on Apache Spark into Parquet",
        description=(
            "Answer every file under SOURCE with the served model on Apache Spark and write one row per file "
            "to Parquet: path, age, gender, gender_probability (of that gender), error (empty when answered) "
            "and faces (every face found, with its box and answer). A file that cannot be read, or has no face, "
            "is a row with its error, and the other files are answered. Needs pyspark "
            '(pip install "skface[spark]") and Java 17 or newer.'
        ),
    )
    p.add_argument("source", help="a folder (read recursively), a glob such as 'photos/*.jpg', or a URI that Spark "
                                   "reads (hdfs://, s3a://, ...)")
    p.add_argument("--output", required=True, help="the Parquet folder to write")
    p.add_argument("--model", default=None,
                   help="an MLflow model URI such as models:/skface@champion or runs:/<run_id>/model, an MLflow "
                        "model folder, or a folder saved by `skface train --save`; default: the pretrained model")
    p.add_argument("--crops", action="store_true",
                   help="the images are tight face crops already: answer each whole, without looking for faces")
    p.add_argument("--master", default=None,
                   help="Spark master: local[4], spark://host:7077, yarn, ...; default: $MASTER, else local[*] "
                        "(every core of this machine)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(func=_score_spark)


def _serve(args) -> int:
    import os
    import signal
    import subprocess
    import tempfile

    from ..tracking.pyfunc import as_mlflow_model, save_model
    from .options import load_model

    with tempfile.TemporaryDirectory(prefix="skface-serve-") as scratch:
        if args.save is not None:
            folder = save_model(load_model(args.model), args.save)
        else:
            # A logged model is served as it is; a skface model is written afresh each time (a few
            # seconds), so the served code is always this skface's.
            folder = as_mlflow_model(args.model, Path(scratch) / "model")
        command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(folder), "--env-manager", "local",
                   "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
        print(f"Serving {args.model or 'the pretrained model'} at http://{args.host}:{args.port}/invocations; "
              "Ctrl-C stops it.", flush=True)
        # `mlflow models serve --env-manager local` starts uvicorn from PATH: this Python's own.
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        server = subprocess.Popen(command, env=env)
        # Stopping this command stops the server: SIGTERM is passed on (Ctrl-C reaches both already).
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: server.send_signal(signum))
        try:
            while True:
                try:
                    return server.wait()
                except KeyboardInterrupt:
                    continue  # the server got the same Ctrl-C and is stopping
        finally:
            signal.signal(signal.SIGTERM, previous)


def _score_spark(args) -> int:
    from ..spark import require_spark, score_images, spark_session

    require_spark()
    from pyspark.errors import AnalysisException
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    started = SparkSession.getActiveSession() is None
    spark = spark_session(args.master)
    try:
        scores = score_images(spark, args.model, args.source, crops=args.crops)
        try:
            scores.write.mode("overwrite" if args.overwrite else "errorifexists").parquet(str(args.output))
        except AnalysisException as exc:
            if exc.getCondition() != "PATH_ALREADY_EXISTS":
                raise
            print(f"skface score-spark: error: {args.output} exists already; pass --overwrite to replace it, or "
                  "another --output.", file=sys.stderr)
            return 2
        n_files, n_errors = spark.read.parquet(str(args.output)).agg(
            F.count("*"), F.coalesce(F.sum((F.col("error") != "").cast("long")), F.lit(0))).first()
    finally:
        if started:
            spark.stop()
    if not n_files:
        print(f"skface score-spark: error: {args.source} holds no files; pass a folder of images or a glob that "
              "matches some.", file=sys.stderr)
        return 1
    print(f"Scored {n_files} files into {args.output}: {n_files - n_errors} answered, {n_errors} with an error "
          "(their rows say why).")
    return 0


def _train(args) -> int:
    from ..data.sources import SyntheticDataWarning
    from ..data.utkface import SkippedFilesWarning
    from ..evaluation import evaluate
    from ..network.persistence import save_pretrained
    from ..network.pipeline import held_out_answers, train_pipeline, training_data
    from .options import training_arguments
    from .report import print_figures

    kwargs = training_arguments(args.parser, args)
    params, config, init = kwargs.pop("params"), kwargs.pop("config"), kwargs.pop("init")
    if config is not None:
        print(f"Configuration {config!r}: {kwargs['image_size']} px {kwargs['color']}, {params}")
    if init is not None:
        print(f"Fine-tuning {args.init_model}: {kwargs['image_size']} px {kwargs['color']}, {params}")
    with warnings.catch_warnings(record=True) as caught:
        # Said below in this command's own words; the skipped files' counts by reason as they are, without
        # the source line that Python's warning display adds.
        warnings.simplefilter("ignore", SyntheticDataWarning)
        warnings.simplefilter("always", SkippedFilesWarning)
        split = training_data(**kwargs)
    for warning in caught:
        if issubclass(warning.category, SkippedFilesWarning):
            print(f"Warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    data = split.data
    if data.kind == "synthetic":
        print(f"Data: {len(data.images)} synthetic faces. A model trained on them knows nothing about "
              "real faces; pass --data PATH to train on UTKFace.")
    else:
        sources = ", ".join([data.source, *data.get("extra", [])])
        role = "" if kwargs["train_on_extra"] or not data.get("extra") else "; the extra sources only calibrate"
        print(f"Data: {len(data.images)} faces from {sources} ({len(data.skipped)} files skipped{role}).")
    pipeline, seconds = train_pipeline(split.X_train, split.y_train, params, image_size=kwargs["image_size"],
                                       color=kwargs["color"], seed=kwargs["seed"],
                                       calibration=(split.X_calibration, split.y_calibration),
                                       init=None if init is None else init.estimator)
    estimator = pipeline[-1]
    y_pred, proba, intervals = held_out_answers(estimator, split.X_test)
    figures = evaluate(split.y_test, y_pred, proba, race=split.race_test, intervals=intervals)
    y_train = split.y_train
    baseline = np.column_stack([np.full(len(split.y_test), np.median(y_train[:, 0])),
                                np.full(len(split.y_test), float(y_train[:, 1].mean() >= 0.5))])
    trained = (f"{len(split.X_train) // 2} faces, each also as the face step aligns it" if kwargs["aligned_views"]
               else f"{len(split.X_train)} faces")
    start = "Trained" if args.init_model is None else f"Fine-tuned {args.init_model}:"
    print(f"\n{start} {estimator.n_epochs_} epochs on {trained}, in {seconds:.1f} s"
          + (f"; calibrated on {len(split.X_calibration)} others." if len(split.X_calibration) else "."))
    print(f"Held-out figures on {len(split.X_test)} faces (stratified by age band and gender):")
    print_figures(figures, evaluate(split.y_test, baseline))
    if args.save is not None:
        metadata = {
            "data": data.source,
            "extra_data": list(data.get("extra", [])),
            "data_digest": data.digest,
            "configuration": config,
            "seed": kwargs["seed"],
            "aligned_views": kwargs["aligned_views"],
            "train_on_extra": kwargs["train_on_extra"],
            **({} if init is None else {"init_model": init.lineage}),
            "n_train": int(len(split.X_train)),
            "n_test": int(len(split.X_test)),
            "n_calibration": int(len(split.X_calibration)),
            "train_seconds": round(seconds, 1),
            "test_metrics": figures,
        }
        save_pretrained(pipeline, args.save, metadata=metadata)
        print(f"\nSaved to {args.save}; load it with skface.load_pretrained({str(args.save)!r}).")
    return 0


def _image_files(inputs: list[Path]) -> tuple[list[Path], int]:
    """Every file to answer, and how many inputs were empty folders (each reported on stderr).

    A path that does not exist stays in the list: its row reports it, and the other files go on.
    """
    files, n_empty = [], 0
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file())
            if not found:
                print(f"skface predict: error: the folder {item} holds no files; pass image files or a folder "
                      "of images.", file=sys.stderr)
                n_empty += 1
            files.extend(found)
        else:
            files.append(item)
    return files, n_empty


def _predict(args) -> int:
    from tqdm.auto import tqdm

    from ..network.pipeline import predict_rows
    from .options import load_model

    if args.batch_size < 1:
        raise SystemExit(f"skface predict: --batch-size must be at least 1, got {args.batch_size}.")
    pipeline = load_model(args.model)
    files, n_empty = _image_files(args.inputs)
    if not files:
        return 1
    if args.annotate is not None:
        args.annotate.mkdir(parents=True, exist_ok=True)
    n_errors = 0
    width = max([len(str(f)) for f in files] + [4])
    if not args.json:
        print(f"{'file':<{width}}  {'face':>4}  {'box (x, y, w, h)':<23} {'conf':>5}  {'age (80% range)':<15}  "
              f"{'gender':<7} {'P(gender)':>9}")
    with tqdm(total=len(files), desc="Predicting", unit="img", disable=len(files) <= args.batch_size) as bar:
        for start in range(0, len(files), args.batch_size):
            batch = files[start:start + args.batch_size]
            for path, row in zip(batch, predict_rows(pipeline, batch, batch_size=args.batch_size, crops=args.crops)):
                n_errors += bool(row["error"])
                for line in _face_lines(path, row):
                    if args.json:
                        print(json.dumps(line))
                    elif line["error"]:
                        print(f"{line['file']:<{width}}  error: {line['error']}")
                    else:
                        box = "whole image" if line["box"] is None else ", ".join(f"{v:.0f}" for v in line["box"])
                        conf = "" if line["confidence"] is None else f"{line['confidence']:.2f}"
                        age = f"{line['age']:.0f}" + ("" if line["age_low"] is None
                                                      else f" ({line['age_low']:.0f}-{line['age_high']:.0f})")
                        print(f"{line['file']:<{width}}  {line['face']:>4}  {box:<23} {conf:>5}  {age:<15}  "
                              f"{line['gender']:<7} {line['gender_probability']:>9.2f}")
                if args.annotate is not None and not row["error"]:
                    _annotate(path, row, args.annotate, Path(args.inputs[0]))
            bar.update(len(batch))
    if n_errors:
        print(f"{n_errors} of {len(files)} files could not be read or have no face.", file=sys.stderr)
    return 1 if n_errors or n_empty else 0


def _face_lines(path: Path, row: dict) -> list[dict]:
    """One output line per face of a row (one line with the error for a row without an answer)."""
    if row["error"]:
        return [{"file": str(path), "face": None, "box": None, "confidence": None, "age": None, "age_low": None,
                 "age_high": None, "gender": None, "gender_probability": None, "error": row["error"]}]
    return [{"file": str(path), "face": index, "box": face["box"], "confidence": face["confidence"],
             "age": round(face["age"], 1),
             **{key: None if face[key] is None else round(face[key], 1) for key in ("age_low", "age_high")},
             "gender": face["gender"], "gender_probability": round(face["gender_probability"], 3), "error": ""}
            for index, face in enumerate(row["faces"])]


def _annotate(path: Path, row: dict, folder: Path, root: Path) -> None:
    """Write the image with its faces drawn on it as ``folder/<its name>.jpg``."""
    from ..faces import draw_faces, load_rgb

    name = path.relative_to(root) if root.is_dir() and root in path.parents else Path(path.name)
    target = (folder / name).with_suffix(".jpg")
    target.parent.mkdir(parents=True, exist_ok=True)
    draw_faces(load_rgb(path), row["faces"]).save(target, quality=90)


def main(argv: list[str] | None = None) -> int:
    """Run the ``skface`` command line."""
    parser = argparse.ArgumentParser(prog="skface", description="Age and gender estimation from face images.")
    parser.add_argument("--version", action="version", version=f"skface {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _predict_parser(sub)
    _serve_parser(sub)
    _score_spark_parser(sub)
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    args.argv = argv[argv.index(args.command) + 1:]  # the command's own arguments

    from ..exceptions import SkfaceError
    from ..quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    try:
        return args.func(args)
    except SkfaceError as exc:
        print(f"skface {args.command}: error: {exc}", file=sys.stderr)
        return 2

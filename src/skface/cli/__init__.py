"""The ``skface`` command line: train a model and predict with it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train AgeGenderCNN and report held-out figures",
        description=(
            "Train AgeGenderCNN on synthetic faces (the default, no download needed) or on a "
            "UTKFace folder or archive, evaluate it on a held-out split and optionally save it."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic' for generated faces, or a UTKFace folder, .zip or .tar.gz archive",
    )
    p.add_argument("--n-samples", type=int, default=2000, help="number of synthetic faces (with --data synthetic)")
    p.add_argument("--image-size", type=int, default=64, help="side of the square input images in pixels")
    p.add_argument("--color", choices=["grayscale", "rgb"], default="grayscale", help="input colour")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--batch-size", type=int, default=32, help="images per gradient step")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--validation-split", type=float, default=None,
                   help="share of the training data for validation (default: the configuration's, else 0.1)")
    p.add_argument("--test-split", type=float, default=0.2, help="share of the data held out for the final figures")
    p.add_argument("--seed", type=int, default=0, help="random seed for data, split and training")
    from ..configurations import CONFIGURATIONS

    p.add_argument("--config", default=None, choices=sorted(CONFIGURATIONS),
                   help="a named configuration (see skface.configurations) that sets the image "
                        "size, colour and every hyperparameter, overriding the options above (except an explicit --validation-split)")
    p.add_argument("--save", type=Path, default=None, help="folder to save the fitted pipeline to (see load_pretrained)")
    p.set_defaults(func=_train)


def _predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict age and gender for image files or folders",
        description=(
            "Predict age and gender for image files, or every file in the given folders (recursively). "
            "Unreadable files are reported and skipped; the exit status is 1 if any was."
        ),
    )
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders of images")
    p.add_argument(
        "--model",
        default=None,
        help="a folder saved by `skface train --save`, or an MLflow model URI such as "
        "models:/skface@champion or runs:/<run_id>/model; default: the pretrained model",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of a table")
    p.add_argument("--batch-size", type=int, default=256, help="images decoded and predicted at a time")
    p.set_defaults(func=_predict)


def _train(args) -> int:
    from sklearn.pipeline import Pipeline

    from ..configurations import get_configuration
    from ..data.preprocessing import ImagePreprocessor
    from ..data.sources import resolve_data
    from ..evaluation import AGE_BANDS, evaluate, stratified_split
    from ..network.estimator import AgeGenderCNN
    from ..network.persistence import save_pretrained

    if not 0 < args.test_split < 1:
        raise SystemExit(f"skface train: --test-split must be between 0 and 1, got {args.test_split}.")
    params = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate}
    image_size, color = args.image_size, args.color
    if args.config is not None:
        config = get_configuration(args.config)
        params, image_size, color = config["estimator"], config["image_size"], config["color"]
        print(f"Configuration {args.config!r}: {image_size} px {color}, {params}")
    data = resolve_data(args.data, image_size=image_size, color=color, n_synthetic=args.n_samples,
                        random_state=args.seed)
    if data.kind == "synthetic":
        print(f"Data: {len(data.images)} synthetic faces. A model trained on them knows nothing about "
              "real faces; pass --data PATH to train on UTKFace.")
    else:
        print(f"Data: {len(data.images)} faces from {data.source} ({len(data.skipped)} files skipped).")
    X_train, X_test, y_train, y_test = stratified_split(data.images, data.target, test_size=args.test_split,
                                                        random_state=args.seed)
    if args.validation_split is not None:
        params["validation_split"] = args.validation_split
    estimator = AgeGenderCNN(**{"validation_split": 0.1, **params}, random_state=args.seed)
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    figures = evaluate(y_test, *estimator.predict_with_proba(X_test))
    baseline = np.column_stack(
        [np.full(len(y_test), np.median(y_train[:, 0])), np.full(len(y_test), float(y_train[:, 1].mean() >= 0.5))]
    )
    base = evaluate(y_test, baseline)
    print(f"\nTrained {estimator.n_epochs_} epochs on {len(X_train)} faces in {seconds:.1f} s.")
    print(f"Held-out figures on {len(X_test)} faces (stratified by age band and gender):")
    print(f"  {'metric':<18}{'model':>10}{'baseline':>10}")
    for label, key in (("age MAE (years)", "age_mae"), ("CS@5", "cs5"), ("gender accuracy", "gender_accuracy")):
        print(f"  {label:<18}{figures[key]:>10.3f}{base[key]:>10.3f}")
    if "gender_roc_auc" in figures:
        print(f"  {'gender ROC AUC':<18}{figures['gender_roc_auc']:>10.3f}{0.5:>10.3f}")
    for band, _, _ in AGE_BANDS:
        if f"n_{band}" in figures:
            print(f"  {band:<8}n={figures[f'n_{band}']:<5.0f} age MAE {figures[f'age_mae_{band}']:>6.2f}   "
                  f"gender accuracy {figures[f'gender_accuracy_{band}']:.3f}")
    print("  (baseline: the median training age and the majority gender)")
    if args.save is not None:
        pipeline = Pipeline([("preprocess", ImagePreprocessor(image_size=image_size, color=color)),
                             ("model", estimator)])
        metadata = {
            "data": data.source,
            "data_digest": data.digest,
            "configuration": args.config,
            "seed": args.seed,
            "n_train": int(len(X_train)),
            "n_test": int(len(X_test)),
            "train_seconds": round(seconds, 1),
            "test_metrics": figures,
        }
        save_pretrained(pipeline, args.save, metadata=metadata)
        print(f"\nSaved to {args.save}; load it with skface.load_pretrained({str(args.save)!r}).")
    return 0


def _image_files(inputs: list[Path]) -> list[Path]:
    files = []
    for item in inputs:
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.is_file()))
        elif item.is_file():
            files.append(item)
        else:
            raise SystemExit(f"skface predict: no such file or folder: {item}")
    return files


def _load_model(spec: str | None):
    from ..network.persistence import load_pretrained

    if spec is None or Path(spec).is_dir():
        return load_pretrained(spec)
    if ":/" in spec:
        from ..tracking.pyfunc import load_estimator

        return load_estimator(spec)
    raise SystemExit(
        f"skface predict: --model {spec!r} is neither a saved model folder nor an MLflow model URI "
        "(models:/NAME@ALIAS, runs:/RUN_ID/model)."
    )


def _predict(args) -> int:
    from tqdm.auto import tqdm

    from ..data.imaging import decode_image
    from ..exceptions import ImageDecodeError

    if args.batch_size < 1:
        raise SystemExit(f"skface predict: --batch-size must be at least 1, got {args.batch_size}.")
    pipeline = _load_model(args.model)
    preprocessor, estimator = pipeline.steps[0][1], pipeline.steps[-1][1]
    files = _image_files(args.inputs)
    width = max([len(str(f)) for f in files] + [4])
    if not args.json:
        print(f"{'file':<{width}}  {'age':>5}  {'gender':<7} {'p':>5}")
    n_errors = 0
    with tqdm(total=len(files), desc="Predicting", unit="img", disable=len(files) <= args.batch_size) as bar:
        for start in range(0, len(files), args.batch_size):
            rows, images = [], []
            for path in files[start : start + args.batch_size]:
                row = {"file": str(path), "age": None, "gender": None, "gender_probability": None, "error": ""}
                try:
                    images.append(decode_image(path, preprocessor.image_size, preprocessor.color,
                                               max_pixels=preprocessor.max_pixels))
                except ImageDecodeError as exc:
                    row["error"] = str(exc)
                    n_errors += 1
                rows.append(row)
            good = [row for row in rows if not row["error"]]
            if good:
                batch = np.stack(images)
                y_pred, proba = estimator.predict_with_proba(batch)
                p_female = proba[:, 1]
                for row, (age, gender), p in zip(good, y_pred, p_female):
                    row["age"] = round(float(age), 1)
                    row["gender"] = "female" if gender == 1 else "male"
                    row["gender_probability"] = round(float(p if gender == 1 else 1 - p), 3)
            for row in rows:
                if args.json:
                    print(json.dumps(row))
                elif row["error"]:
                    print(f"{row['file']:<{width}}  error: {row['error']}")
                else:
                    print(f"{row['file']:<{width}}  {row['age']:>5.1f}  {row['gender']:<7} {row['gender_probability']:>5.2f}")
            bar.update(len(rows))
    if n_errors:
        print(f"{n_errors} of {len(files)} files could not be read.", file=sys.stderr)
    return 1 if n_errors else 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``skface`` command line."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="skface", description="Age and gender estimation from face images.")
    parser.add_argument("--version", action="version", version=f"skface {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _predict_parser(sub)
    args = parser.parse_args(argv)

    from ..exceptions import SkfaceError
    from ..quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    try:
        return args.func(args)
    except SkfaceError as exc:
        print(f"skface {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

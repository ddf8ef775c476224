"""Saved models side by side on the same held-out faces: overall, per age band, gender and race group.

Each model (a folder written by skface.save_pretrained, or ``pretrained`` for
the shipped one) is evaluated on the documented test split of ``--data``
(80/20, stratified by age band and gender, seed 0: the split of every
training command), at its own input size and colour. Printed per model: age
MAE, CS@5, gender accuracy, the gender probability's expected calibration
error (ECE), and for a calibrated model the coverage and median width of its
80% age ranges; then the same per age band, gender and race group, with the
counts. The faces go to the network as the test arrays (no face step; the
``tight-crops`` subcommand of bench_faces.py measures that).

Example, the shipped model against the one before it (taken from git):

    mkdir -p /tmp/v1 && git archive <commit> src/skface/pretrained | tar -x -C /tmp/v1
    python experiments/compare_models.py --models v1=/tmp/v1/src/skface/pretrained,v2=pretrained
"""

import argparse
import sys
import warnings

import numpy as np

from skface.cli.options import whole_number
from skface.quiet import import_tensorflow_quietly


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/utkface-crop_part1", help="UTKFace folder or archive")
    parser.add_argument("--models", default="pretrained",
                        help="comma-separated NAME=FOLDER (or NAME=pretrained); the first is the baseline")
    parser.add_argument("--test-split", type=float, default=0.2, help="held-out share")
    parser.add_argument("--seed", type=whole_number, default=0, help="seed of the split")
    args = parser.parse_args(argv)
    models = {}
    for item in filter(None, (part.strip() for part in args.models.split(","))):
        name, _, folder = item.rpartition("=")
        models[name or folder] = folder
    args.models = models
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import_tensorflow_quietly()
    from skface import load_pretrained
    from skface.data.sources import train_test_data
    from skface.data.utkface import SkippedFilesWarning
    from skface.evaluation import AGE_BANDS, RACES, evaluate
    from skface.network.pipeline import held_out_answers

    warnings.simplefilter("ignore", SkippedFilesWarning)  # the split's own files; their count is documented
    results, splits = {}, {}
    for name, folder in args.models.items():
        estimator = load_pretrained(None if folder == "pretrained" else folder)[-1]
        height, _, channels = estimator.input_shape_
        key = (height, channels)
        if key not in splits:
            splits[key] = train_test_data(args.data, test_split=args.test_split, seed=args.seed, image_size=height,
                                          color="grayscale" if channels == 1 else "rgb", verbose=False)
        split = splits[key]
        y_pred, proba, intervals = held_out_answers(estimator, split.X_test)
        results[name] = evaluate(split.y_test, y_pred, proba, race=split.race_test, intervals=intervals)
    width = 12
    print(f"{len(split.y_test)} test faces of {args.data} (test_split={args.test_split}, seed={args.seed})")
    print(f"{'':<30}" + "".join(f"{name:>{width}}" for name in results))
    rows = [("age MAE (years)", "age_mae", ".2f"), ("CS@5", "cs5", ".3f"), ("gender accuracy", "gender_accuracy", ".3f"),
            ("gender ROC AUC", "gender_roc_auc", ".3f"), ("gender ECE", "gender_ece", ".3f"),
            ("80% range coverage", "interval_coverage", ".3f"), ("80% range median width", "interval_width", ".1f")]
    for label, key, fmt in rows:
        print(f"{label:<30}" + "".join(f"{figures.get(key, float('nan')):>{width}{fmt}}" for figures in results.values()))
    groups = [band for band, _, _ in AGE_BANDS] + ["male", "female"] + list(RACES.values())
    for group in groups:
        first = next(iter(results.values()))
        if f"n_{group}" not in first:
            continue
        print(f"\n{group} (n = {first[f'n_{group}']:.0f})")
        for label, key, fmt in (("  age MAE", "age_mae", ".2f"), ("  gender accuracy", "gender_accuracy", ".3f"),
                                ("  80% range coverage", "interval_coverage", ".3f"),
                                ("  80% range median width", "interval_width", ".1f")):
            print(f"{label:<30}" + "".join(f"{figures.get(f'{key}_{group}', float('nan')):>{width}{fmt}}"
                                           for figures in results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

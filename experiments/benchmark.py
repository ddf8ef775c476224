"""Train named configurations on the same split of a UTKFace folder and print their figures side by side.

Each configuration (see skface.configurations: "seed" is the seed-faithful
baseline) is trained on the same documented split: 80/20, stratified by age
band and gender, with a fixed seed. Printed per configuration: age MAE, CS@5,
gender accuracy, per-age-band figures, training seconds per epoch and
inference images per second.
"""

import argparse
import sys
import time

from skface.options import whole_number
from skface.quiet import import_tensorflow_quietly


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="../shared/data/utkface-crop_part1",
                        help="UTKFace folder or archive ('synthetic' for a dry run)")
    parser.add_argument("--configs", default="seed,regularized", help="comma-separated configuration names")
    parser.add_argument("--epochs", type=whole_number, default=0,
                        help="override every configuration's epochs (for a quick look); 0 keeps them")
    parser.add_argument("--test-split", type=float, default=0.2, help="held-out share")
    parser.add_argument("--seed", type=whole_number, default=0, help="seed of the split and of training")
    parser.add_argument("--n-synthetic", type=whole_number, default=2000, help="faces, with --data synthetic")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import_tensorflow_quietly()
    import numpy as np

    from skface import AgeGenderCNN
    from skface.configurations import get_configuration
    from skface.datasource import resolve_data
    from skface.evaluation import AGE_BANDS, evaluate, stratified_split

    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    configs = {name: get_configuration(name) for name in names}
    results = {}
    for name, config in configs.items():
        data = resolve_data(args.data, image_size=config["image_size"], color=config["color"],
                            n_synthetic=args.n_synthetic, random_state=args.seed)
        index = np.arange(len(data.target))
        train, test, _, _ = stratified_split(index, data.target, test_size=args.test_split, random_state=args.seed)
        params = {**config["estimator"], "random_state": args.seed}
        if args.epochs:
            params["epochs"] = args.epochs
        estimator = AgeGenderCNN(**params)
        print(f"\n== {name}: {config['image_size']} px {config['color']}, {params}", flush=True)
        start = time.perf_counter()
        estimator.fit(data.images[train], data.target[train])
        seconds = time.perf_counter() - start
        X_test = data.images[test]
        estimator.predict(X_test[:256])
        start = time.perf_counter()
        y_pred, proba = estimator.predict_with_proba(X_test)
        rate = len(X_test) / (time.perf_counter() - start)
        figures = evaluate(data.target[test], y_pred, proba)
        figures.update(train_seconds=seconds, seconds_per_epoch=seconds / estimator.n_epochs_,
                       images_per_second=rate, epochs=estimator.n_epochs_)
        results[name] = figures

    width = 14
    print(f"\n{'':<26}" + "".join(f"{n:>{width}}" for n in results))
    rows = [("age MAE (years)", "age_mae", ".2f"), ("CS@5", "cs5", ".3f"), ("gender accuracy", "gender_accuracy", ".3f"),
            ("gender ROC AUC", "gender_roc_auc", ".3f"), ("epochs", "epochs", ".0f"),
            ("train minutes", "train_seconds", ".1f"), ("seconds per epoch", "seconds_per_epoch", ".1f"),
            ("inference images/s", "images_per_second", ".0f")]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

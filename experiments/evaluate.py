"""Evaluate any logged or registered skface model on a dataset, logging the same test figures and plots as training.

Examples: --model-uri models:/skface@champion, --model-uri runs:/<run_id>/model.
"""

import argparse
import json
import sys

from skface.cli.options import whole_number
from skface.quiet import import_tensorflow_quietly


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-uri", default="models:/skface@champion", help="MLflow model URI to evaluate, or 'pretrained' for the model shipped with skface")
    parser.add_argument("--data", default="auto",
                        help="'auto', 'synthetic' or the path of a UTKFace folder or archive")
    parser.add_argument("--n-synthetic", type=whole_number, default=2000, help="number of synthetic faces, when used")
    parser.add_argument("--test-split", type=float, default=0.2,
                        help="evaluate on this held-out share (same split as training with the same seed); "
                             "1 evaluates on every image")
    parser.add_argument("--seed", type=whole_number, default=0, help="seed of the split and of the synthetic faces")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: 'skface')")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import_tensorflow_quietly()
    from skface.cli.report import print_figures
    from skface.tracking.recipes import run_evaluate

    summary = run_evaluate(model_uri=args.model_uri, data=args.data, n_synthetic=args.n_synthetic,
                           test_split=args.test_split, seed=args.seed, experiment=args.experiment)
    if args.json:
        print(json.dumps(summary, default=str))
        return 0
    print(f"\nEvaluation run {summary['run_id']} of {args.model_uri} on {summary['n_test']} faces")
    print_figures(summary["figures"], prefix="test_")
    print(f"Runs in the MLflow UI (start it with `mlflow ui`): {summary['ui']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

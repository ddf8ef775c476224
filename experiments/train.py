"""Train AgeGenderCNN, evaluate it on a held-out split, log everything to MLflow and register it.

The `main` entry point of the MLproject: `mlflow run . -P epochs=30`.
Run directly, it logs to the experiment `skface` of the tracking store that
MLFLOW_TRACKING_URI names (by default ./mlflow.db).
"""

import argparse
import json
import sys

from skface.quiet import import_tensorflow_quietly


def parse_args(argv=None) -> dict:
    """The keyword arguments of skface.tracking.recipes.run_train, and whether to print JSON."""
    from skface.cli.options import (
        add_configuration_argument,
        add_data_arguments,
        add_estimator_arguments,
        add_init_model_argument,
        add_run_arguments,
        training_arguments,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_arguments(parser)
    add_estimator_arguments(parser)
    add_configuration_argument(parser)
    add_init_model_argument(parser)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    kwargs = training_arguments(parser, args)
    return {**kwargs, "registered_model": args.registered_model, "experiment": args.experiment}, args.json


def main(argv=None) -> int:
    kwargs, as_json = parse_args(argv)
    import_tensorflow_quietly()
    from skface.cli.report import print_figures, print_registration
    from skface.tracking.recipes import run_train

    summary = run_train(**kwargs)
    if as_json:
        print(json.dumps(summary, default=str))
        return 0
    print(f"\nRun {summary['run_id']} on {summary['data']}")
    print_figures(summary["figures"], prefix="test_")
    print_registration(summary, kwargs["registered_model"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

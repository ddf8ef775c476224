"""Grid search over AgeGenderCNN hyperparameters: one child run per trial under one parent run.

Trials are ranked by validation loss; the parent run logs the best trial's
parameters and test figures, logs its model and registers it. With
--backend spark the trials run at once as Spark tasks (joblibspark).
"""

import argparse
import json
import sys

from skface.cli.options import whole_number
from skface.quiet import import_tensorflow_quietly


def parse_args(argv=None) -> dict:
    """The keyword arguments of skface.tracking.recipes.run_sweep, and whether to print JSON."""
    from skface.cli.options import (
        add_configuration_argument,
        add_data_arguments,
        add_estimator_arguments,
        add_run_arguments,
        parse_grid,
        training_arguments,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_arguments(parser)
    add_estimator_arguments(parser, command="sweep")
    add_configuration_argument(parser)
    parser.add_argument("--grid", default="dropout=0.2,0.4;learning_rate=0.001,0.0003",
                        help="hyperparameter grid: 'name=v1,v2;name=v1,v2' (filters choices use '/': 16/32,32/64)")
    parser.add_argument("--max-trials", type=whole_number, default=8, help="at most this many trials of the grid")
    parser.add_argument("--backend", choices=["local", "spark"], default="local",
                        help="where the trials run: one after another in this process, or at once as Spark tasks "
                             "(spark-submit's master, else $MASTER, else local[*]; needs pip install "
                             "\"skface[spark]\" and Java 17 or newer)")
    parser.add_argument("--n-jobs", type=whole_number, default=-1,
                        help="with --backend spark: trials at a time; -1 is as many as the executors run at once")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    kwargs = training_arguments(parser, args, command="sweep")
    del kwargs["init"]  # a sweep trains new networks: it takes no --init-model
    try:
        grid = parse_grid(args.grid)  # a bad grid fails before any data is loaded
    except ValueError as exc:
        parser.error(str(exc))
    return {**kwargs, "grid": grid, "grid_text": args.grid, "max_trials": args.max_trials,
            "registered_model": args.registered_model, "experiment": args.experiment, "backend": args.backend,
            "n_jobs": args.n_jobs}, args.json


def main(argv=None) -> int:
    kwargs, as_json = parse_args(argv)
    import_tensorflow_quietly()
    from skface.cli.report import print_figures, print_registration
    from skface.tracking.recipes import run_sweep

    summary = run_sweep(**kwargs)
    if as_json:
        print(json.dumps(summary, default=str))
        return 0
    print(f"\nSweep run {summary['run_id']}: best trial {summary['best_trial']} {summary['best_params']}")
    print_figures(summary["figures"], prefix="test_")
    print_registration(summary, kwargs["registered_model"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

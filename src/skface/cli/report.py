"""Held-out figures as a table for the terminal, the same in ``skface train`` and the experiment scripts."""

from __future__ import annotations

from ..evaluation import AGE_BANDS, RACES

_ROWS = (("age MAE (years)", "age_mae"), ("CS@5", "cs5"), ("gender accuracy", "gender_accuracy"),
         ("gender ROC AUC", "gender_roc_auc"), ("gender ECE", "gender_ece"), ("score", "score"),
         ("80% range coverage", "interval_coverage"), ("80% range width", "interval_width"))


def print_figures(figures: dict, baseline: dict | None = None, *, prefix: str = "") -> None:
    """Print the main figures of :func:`skface.evaluation.evaluate`, then one line per age band.

    Parameters
    ----------
    figures : dict
        The model's figures, their names starting with ``prefix``.
    baseline : dict, optional
        Figures of a baseline (the median training age and the majority
        gender), printed in a second column.
    prefix : str, default=""
        ``"test_"`` for figures as logged to MLflow.
    """
    header = f"  {'metric':<18}{'model':>10}" + (f"{'baseline':>10}" if baseline is not None else "")
    print(header)
    for label, key in _ROWS:
        if prefix + key not in figures:
            continue
        line = f"  {label:<18}{figures[prefix + key]:>10.3f}"
        if baseline is not None:
            line += f"{baseline[key]:>10.3f}" if key in baseline else f"{0.5 if key == 'gender_roc_auc' else '':>10}"
        print(line)
    ranges = f"{prefix}interval_coverage" in figures
    for title, groups in (("age band", [band for band, _, _ in AGE_BANDS]), ("gender", ["male", "female"]),
                          ("race", list(RACES.values()))):
        groups = [group for group in groups if f"{prefix}n_{group}" in figures]
        if not groups:
            continue
        print(f"  {title:<10}{'n':>6}{'age MAE':>9}{'gender acc':>12}" + (f"{'coverage':>10}{'width':>7}" if ranges else ""))
        for group in groups:
            line = (f"  {group:<10}{figures[f'{prefix}n_{group}']:>6.0f}{figures[f'{prefix}age_mae_{group}']:>9.2f}"
                    f"{figures[f'{prefix}gender_accuracy_{group}']:>12.3f}")
            if ranges:
                line += (f"{figures[f'{prefix}interval_coverage_{group}']:>10.3f}"
                         f"{figures[f'{prefix}interval_width_{group}']:>7.1f}")
            print(line)
    if baseline is not None:
        print("  (baseline: the median training age and the majority gender)")


def print_registration(summary: dict, registered_model: str) -> None:
    """Where a tracked training run registered its model, and the link to its runs in the MLflow UI."""
    print(f"Registered {registered_model} version {summary['version']}: {summary['reason']}")
    print(f"Runs in the MLflow UI (start it with `mlflow ui`): {summary['ui']}")

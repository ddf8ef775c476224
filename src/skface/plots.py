"""Diagnostic figures of training and of ``[age, gender]`` predictions.

Every function returns a :class:`matplotlib.figure.Figure` built without
:mod:`matplotlib.pyplot`, so no global figure state is touched, nothing
needs a display, and figures are freed once they are no longer referenced.
Log them to MLflow or write them to disk::

    fig = skface.plots.predicted_vs_true_age(y_test, model.predict(X_test))
    mlflow.log_figure(fig, "plots/predicted_vs_true_age.png")
    skface.plots.save_figure(fig, "predicted_vs_true_age.png")

Targets ``y_true`` and ``y_pred`` have shape ``(n, 2)`` with columns
``[age, gender]``: age in years, gender 0 (male) or 1 (female), as
:meth:`skface.AgeGenderCNN.predict` returns them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from sklearn.metrics import confusion_matrix
from sklearn.utils import check_random_state

from . import metrics
from .evaluation import AGE_BANDS, age_band

GENDER_NAMES = ("male", "female")
#: Title colour of a face whose gender is right and age within the tolerance.
CORRECT_COLOR = "#1a7f37"
#: Title colour of any other face.
WRONG_COLOR = "#cf222e"

_TRAIN_COLOR = "#1f77b4"
_VAL_COLOR = "#ff7f0e"
# Markers keep short runs (a single epoch draws no line) readable.
_MAX_EPOCHS_WITH_MARKERS = 30


def _check_targets(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    age_true, gender_true = metrics._columns(y_true, "y_true")
    age_pred, gender_pred = metrics._columns(y_pred, "y_pred")
    if len(age_true) != len(age_pred):
        raise ValueError(
            f"y_true and y_pred must have the same number of rows, got {len(age_true)} and "
            f"{len(age_pred)}. Pass the predictions of exactly the faces in y_true."
        )
    if len(age_true) == 0:
        raise ValueError("y_true and y_pred are empty; pass at least one face to plot.")
    for name, ages, genders in (("y_true", age_true, gender_true), ("y_pred", age_pred, gender_pred)):
        if not np.all(np.isfinite(ages)):
            raise ValueError(f"{name}'s age column holds NaN or infinite values; drop or fill those rows first.")
        if not np.all(np.isin(genders, (0.0, 1.0))):
            odd = genders[~np.isin(genders, (0.0, 1.0))][0]
            raise ValueError(
                f"{name}'s gender column must hold 0 (male) or 1 (female), got values such as {odd!r}. "
                "Pass the output of AgeGenderCNN.predict, not predict_proba."
            )
    if np.any(age_true < 0):
        raise ValueError(f"y_true's ages must be >= 0 years, got {age_true.min()!r}.")
    return np.column_stack([age_true, gender_true]), np.column_stack([age_pred, gender_pred])


def _band_display(label: str) -> str:
    return label.replace("plus", "+")


def learning_curves(history) -> Figure:
    """Training and validation curves of total loss, age MAE and gender accuracy.

    Parameters
    ----------
    history : dict of str to list of float
        Per-epoch values, as :attr:`skface.AgeGenderCNN.history_` holds them:
        ``loss``, ``age_mae``, ``gender_accuracy`` and their ``val_`` twins.
        Only ``loss`` is required; a panel whose metric is missing says so,
        and missing ``val_`` keys draw the training line alone. When
        ``learning_rate`` is present, the epochs where it changes are
        marked with dotted vertical lines.

    Returns
    -------
    figure : matplotlib.figure.Figure
        Three panels side by side, epochs numbered from 1.

    Examples
    --------
    >>> history = {"loss": [3.0, 2.0], "val_loss": [3.5, 2.5]}
    >>> len(learning_curves(history).axes)
    3
    """
    if not isinstance(history, Mapping):
        raise ValueError(
            f"history must be a dict of metric name to per-epoch values such as AgeGenderCNN.history_, "
            f"got {type(history).__name__}. For a Keras History object pass its .history attribute."
        )
    if "loss" not in history:
        raise ValueError(
            f"history must have a 'loss' key as AgeGenderCNN.history_ does, got keys {sorted(history)}."
        )
    n_epochs = len(history["loss"])
    if n_epochs == 0:
        raise ValueError("history['loss'] is empty; plot the history of a model fitted for at least one epoch.")
    curves = {}
    for key, values in history.items():
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or len(values) != n_epochs:
            raise ValueError(
                f"every history entry must be a list of one value per epoch ({n_epochs}, as 'loss' has), "
                f"got shape {values.shape} for {key!r}."
            )
        curves[key] = values

    epochs = np.arange(1, n_epochs + 1)
    marker = "o" if n_epochs <= _MAX_EPOCHS_WITH_MARKERS else None
    lr_changes = []
    if "learning_rate" in curves:
        lr = curves["learning_rate"]
        lr_changes = list(epochs[1:][~np.isclose(lr[1:], lr[:-1])])

    panels = (
        ("loss", "Total loss", "Loss (weighted sum)", None),
        ("age_mae", "Age MAE", "Mean absolute error (years)", None),
        ("gender_accuracy", "Gender accuracy", "Accuracy (%)", 100.0),
    )
    figure = Figure(figsize=(15, 4.5), layout="constrained")
    axes = figure.subplots(1, len(panels))
    for ax, (key, title, ylabel, scale) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(ylabel)
        if key not in curves:
            ax.text(0.5, 0.5, f"'{key}' not in history", ha="center", va="center", transform=ax.transAxes,
                    color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        # Half-epoch margins keep the ticks on whole epochs even for a one-epoch run.
        ax.set_xlim(0.5, n_epochs + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        factor = scale or 1.0
        ax.plot(epochs, curves[key] * factor, marker=marker, color=_TRAIN_COLOR, label="train")
        if f"val_{key}" in curves:
            ax.plot(epochs, curves[f"val_{key}"] * factor, marker=marker, color=_VAL_COLOR, label="validation")
        for i, epoch in enumerate(lr_changes):
            ax.axvline(epoch, color="0.5", linestyle=":", label="learning rate changed" if i == 0 else None)
        if scale is not None:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=100.0, decimals=0))
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle(f"Learning curves ({n_epochs} epoch{'s' if n_epochs != 1 else ''})")
    return figure


def predicted_vs_true_age(y_true, y_pred, *, tolerance: float = 5.0) -> Figure:
    """Scatter of predicted against true age, with the identity line.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2)
        True and predicted ``[age, gender]``.
    tolerance : float, default=5.0
        Half-width in years of the shaded band around the identity line;
        the title reports the share of faces inside it (CS@tolerance).

    Returns
    -------
    figure : matplotlib.figure.Figure
        One square panel with equal axes; the title gives the MAE.

    Examples
    --------
    >>> y = [[30, 0], [50, 1]]
    >>> predicted_vs_true_age(y, [[33, 0], [45, 1]]).axes[0].get_xlabel()
    'True age (years)'
    """
    y_true, y_pred = _check_targets(y_true, y_pred)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be a number of years >= 0, got {tolerance!r}.")
    n = len(y_true)
    age_true, age_pred = y_true[:, 0], y_pred[:, 0]
    mae = metrics.age_mae(y_true, y_pred)
    within = metrics.cumulative_score(y_true, y_pred, years=tolerance)

    low = min(0.0, age_true.min(), age_pred.min())
    high = max(age_true.max(), age_pred.max())
    high += 0.05 * max(high - low, 1.0)
    line = np.array([low, high])

    figure = Figure(figsize=(6.5, 6.5), layout="constrained")
    ax = figure.subplots()
    ax.fill_between(line, line - tolerance, line + tolerance, color="0.85",
                    label=f"within ±{tolerance:g} years", zorder=0)
    ax.plot(line, line, color="0.3", linestyle="--", linewidth=1, label="perfect prediction", zorder=1)
    # Fade points as they multiply so dense regions still show their density.
    alpha = 0.8 if n <= 200 else max(0.1, 0.8 * math.sqrt(200 / n))
    ax.scatter(age_true, age_pred, s=14, alpha=alpha, color=_TRAIN_COLOR, edgecolors="none", label="face",
               zorder=2)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("True age (years)")
    ax.set_ylabel("Predicted age (years)")
    ax.set_title(f"Predicted vs true age: MAE {mae:.1f} years\n"
                 f"{within:.0%} within ±{tolerance:g} years, n = {n}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return figure


def error_by_age_band(y_true, y_pred) -> Figure:
    """Age MAE and gender accuracy per age band of the true age.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2)
        True and predicted ``[age, gender]``.

    Returns
    -------
    figure : matplotlib.figure.Figure
        Two panels, age MAE (years) and gender accuracy (%), one bar per
        band of :data:`skface.evaluation.AGE_BANDS` that holds faces, in
        that order. Each bar is labelled with its value and face count; a
        dashed line marks the overall figure.
    """
    y_true, y_pred = _check_targets(y_true, y_pred)
    bands = age_band(y_true[:, 0])
    labels, maes, accuracies, counts = [], [], [], []
    for label, _, _ in AGE_BANDS:
        mask = bands == label
        if mask.any():
            labels.append(_band_display(label))
            maes.append(metrics.age_mae(y_true[mask], y_pred[mask]))
            accuracies.append(100.0 * metrics.gender_accuracy(y_true[mask], y_pred[mask]))
            counts.append(int(mask.sum()))

    colors = sns.color_palette("crest", n_colors=len(AGE_BANDS))
    present = [colors[i] for i, (label, _, _) in enumerate(AGE_BANDS) if _band_display(label) in labels]
    panels = (
        ("Age MAE by age band", "Mean absolute error (years)", maes, metrics.age_mae(y_true, y_pred),
         "{:.1f}"),
        ("Gender accuracy by age band", "Accuracy (%)", accuracies,
         100.0 * metrics.gender_accuracy(y_true, y_pred), "{:.0f}%"),
    )
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, (title, ylabel, values, overall, fmt) in zip(axes, panels):
        bars = ax.bar(labels, values, color=present)
        ax.bar_label(bars, labels=[f"{fmt.format(v)}\nn={c}" for v, c in zip(values, counts)], padding=2,
                     fontsize=9)
        ax.axhline(overall, color="0.3", linestyle="--", linewidth=1, label=f"overall {fmt.format(overall)}")
        ax.set_title(title)
        ax.set_xlabel("True age band (years)")
        ax.set_ylabel(ylabel)
        # Headroom for the two-line bar labels and the legend.
        ax.set_ylim(0, 1.3 * max(max(values), overall, 1e-9))
        ax.legend(loc="upper right")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    # Accuracy keeps headroom for the labels but no ticks past 100%.
    axes[1].set_yticks(np.arange(0, 101, 20))
    axes[1].yaxis.set_major_formatter(PercentFormatter(xmax=100.0, decimals=0))
    figure.suptitle(f"Errors by age band (n = {len(y_true)})")
    return figure


def gender_confusion_matrix(y_true, y_pred) -> Figure:
    """Confusion matrix of the gender, with counts and row percentages.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2)
        True and predicted ``[age, gender]``.

    Returns
    -------
    figure : matplotlib.figure.Figure
        A heatmap with true gender in rows and predicted gender in columns.
        Each cell shows its count and its share of the row (the recall of
        the true gender); the colour follows that share, so an unbalanced
        test set does not wash out the smaller class. The title gives the
        accuracy.
    """
    y_true, y_pred = _check_targets(y_true, y_pred)
    counts = confusion_matrix(y_true[:, 1].astype(int), y_pred[:, 1].astype(int), labels=[0, 1])
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(100.0 * counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    annotations = np.array([
        [f"{counts[i, j]}\n({shares[i, j]:.1f}%)" if row_totals[i, 0] else "0\n(no faces)" for j in range(2)]
        for i in range(2)
    ])
    accuracy = metrics.gender_accuracy(y_true, y_pred)

    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.subplots()
    sns.heatmap(shares, annot=annotations, fmt="", cmap="Blues", vmin=0, vmax=100, square=True,
                linewidths=1, linecolor="white", annot_kws={"fontsize": 12},
                cbar_kws={"label": "Share of true gender (%)"}, ax=ax,
                xticklabels=GENDER_NAMES, yticklabels=GENDER_NAMES)
    ax.set_xlabel("Predicted gender")
    ax.set_ylabel("True gender")
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_title(f"Gender confusion matrix: accuracy {accuracy:.1%}, n = {len(y_true)}")
    return figure


def gender_reliability(y_true, proba, *, before=None, n_bins: int = 10) -> Figure:
    """Reliability diagram of the gender probability: stated probability against accuracy.

    Parameters
    ----------
    y_true : array-like of shape (n, 2)
        True ``[age, gender]``.
    proba : array-like of shape (n, 2)
        ``[P(male), P(female)]``, as :meth:`skface.AgeGenderCNN.predict_proba`
        returns them.
    before : array-like of shape (n, 2), optional
        The probabilities before calibration, drawn beside for comparison.
    n_bins : int, default=10
        Equal-width bins of the probability of the predicted gender (0.5-1).

    Returns
    -------
    figure : matplotlib.figure.Figure
        Per bin, the accuracy of its faces against their mean probability
        (a calibrated model lies on the diagonal), with the share of faces in
        each bin below; the legend gives each curve's expected calibration
        error (:func:`skface.metrics.gender_calibration_error`).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    curves = [("after calibration" if before is not None else "model", proba, "#1f77b4")]
    if before is not None:
        curves.insert(0, ("before calibration", before, "#ff7f0e"))
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    figure = Figure(figsize=(5.5, 6), layout="constrained")
    ax, hist = figure.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.plot([0.5, 1], [0.5, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for label, probabilities, color in curves:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        confidence, correct = metrics.reliability_table(y_true[:, 1], probabilities[:, 1])
        bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
        used = [b for b in range(n_bins) if np.any(bins == b)]
        ece = metrics.gender_calibration_error(y_true, probabilities)
        ax.plot([confidence[bins == b].mean() for b in used], [correct[bins == b].mean() for b in used],
                marker="o", color=color, label=f"{label} (ECE {ece:.3f})")
        hist.hist(confidence, bins=edges, weights=np.full(len(confidence), 1 / len(confidence)), color=color,
                  alpha=0.5, label=label)
    ax.set_ylabel("Accuracy")
    ax.set_xlim(0.5, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    ax.set_title(f"Gender probability: reliability, n = {len(y_true)}")
    hist.set_xlabel("Probability of the predicted gender")
    hist.set_ylabel("Faces")
    hist.yaxis.set_major_formatter(PercentFormatter(1.0))
    return figure


def face_grid(images, y_true, y_pred, *, n_faces: int = 16, random_state=0,
              tolerance: float = 5.0) -> Figure:
    """A grid of sampled faces titled with their true and predicted labels.

    Parameters
    ----------
    images : ndarray of shape (n, h, w, c), dtype uint8
        The faces, ``c`` 1 (grayscale) or 3 (RGB).
    y_true, y_pred : array-like of shape (n, 2)
        True and predicted ``[age, gender]`` of ``images``.
    n_faces : int, default=16
        Number of faces to show, drawn without replacement; all ``n`` faces
        when there are fewer.
    random_state : int, numpy.random.RandomState or None, default=0
        Seeds the sample. Pass an int for the same faces on every call.
    tolerance : float, default=5.0
        Largest age error in years that still counts as right.

    Returns
    -------
    figure : matplotlib.figure.Figure
        One panel per face, in a near-square grid, titled like
        ``"true 34 F / pred 31 F"``: green (:data:`CORRECT_COLOR`) when the
        gender is right and the age within ``tolerance``, red
        (:data:`WRONG_COLOR`) otherwise.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must have shape (n, h, w, c) with c = 1 (grayscale) or 3 (RGB), got shape {images.shape}. "
            "Add a channel axis to a grayscale batch with images[..., None]."
        )
    if images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 on the 0-255 scale, got dtype {images.dtype}. "
            "Convert with np.clip(images, 0, 255).astype(np.uint8), or load them with skface.ImagePreprocessor."
        )
    y_true, y_pred = _check_targets(y_true, y_pred)
    if len(images) != len(y_true):
        raise ValueError(
            f"images and y_true must have the same number of rows, got {len(images)} and {len(y_true)}."
        )
    if isinstance(n_faces, bool) or not isinstance(n_faces, (int, np.integer)) or n_faces < 1:
        raise ValueError(f"n_faces must be a positive int, got {n_faces!r}.")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be a number of years >= 0, got {tolerance!r}.")

    n_show = min(n_faces, len(images))
    chosen = np.sort(check_random_state(random_state).choice(len(images), size=n_show, replace=False))
    n_cols = math.ceil(math.sqrt(n_show))
    n_rows = math.ceil(n_show / n_cols)
    figure = Figure(figsize=(max(2.2 * n_cols, 4.4), 2.4 * n_rows + 0.7), layout="constrained")
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    letters = ("M", "F")
    for ax, i in zip(axes, chosen):
        image = images[i]
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image)
        age_t, gender_t = y_true[i]
        age_p, gender_p = y_pred[i]
        right = gender_t == gender_p and abs(age_p - age_t) <= tolerance
        ax.set_title(f"true {age_t:.0f} {letters[int(gender_t)]} / pred {age_p:.0f} {letters[int(gender_p)]}",
                     color=CORRECT_COLOR if right else WRONG_COLOR, fontsize=10)
        ax.set_axis_off()
    for ax in axes[n_show:]:
        figure.delaxes(ax)
    # A narrow grid cannot hold the one-line legend-like title.
    separator = ": " if n_cols >= 4 else "\n"
    figure.suptitle(f"{n_show} sampled face{'s' if n_show != 1 else ''}{separator}"
                    f"green = gender right and age within ±{tolerance:g} years, red otherwise",
                    fontsize=12 if n_cols >= 4 else 10)
    return figure


def save_figure(figure: Figure, path) -> Path:
    """Write a figure to a PNG file at 100 dpi, cropped to its content.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        The figure, such as one returned by this module.
    path : str or path-like
        Destination ending in ``.png``; missing parent folders are created.

    Returns
    -------
    path : pathlib.Path
        Where the figure was written.
    """
    if not isinstance(figure, Figure):
        raise ValueError(f"figure must be a matplotlib.figure.Figure, got {type(figure).__name__}.")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(
            f"save_figure writes PNG files, got a path ending in {path.suffix or 'no suffix'!r}: {path}. "
            "Use a .png path, or call figure.savefig for other formats."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return path

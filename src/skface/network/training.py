"""Compiling the network for training: optimizer, learning-rate schedule, and each head's loss and metric.

Keras is imported inside the function, so that ``LR_SCHEDULES`` can be read
(by the estimator's parameter constraints) without a TensorFlow import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

LR_SCHEDULES = ("constant", "cosine")


def compile_for_training(
    model: keras.Model,
    *,
    learning_rate: float = 1e-3,
    lr_schedule: str = "constant",
    decay_steps: int = 1000,
    weight_decay: float = 0.0,
    label_smoothing: float = 0.0,
    age_loss_weight: float = 1.0,
    gender_loss_weight: float = 1.0,
) -> keras.Model:
    """Compile a network from :func:`~skface.network.architecture.build_model` for training.

    The ``gender`` head gets binary cross-entropy and accuracy, the ``age``
    head mean absolute error as loss and metric, and a ``"dex"`` head's
    ``age_distribution`` output a cross-entropy; the optimizer is Adam
    (AdamW when ``weight_decay > 0``).

    Parameters
    ----------
    model : keras.Model
        Network whose outputs are named ``age``, ``gender`` and, optionally,
        ``age_distribution``.
    learning_rate : float
        Initial (peak) learning rate.
    lr_schedule : {"constant", "cosine"}
        Cosine decay to zero over ``decay_steps`` steps, or constant.
    decay_steps : int
        Length of the cosine decay, in optimizer steps.
    weight_decay : float
        Decoupled weight decay (AdamW); 0 uses plain Adam.
    label_smoothing : float
        Label smoothing of the gender loss.
    age_loss_weight, gender_loss_weight : float
        Weights of the two losses in the total loss.

    Returns
    -------
    model : keras.Model
        The same model, compiled.
    """
    import keras

    losses = {"age": "mae", "gender": keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)}
    weights = {"age": age_loss_weight, "gender": gender_loss_weight}
    if "age_distribution" in model.output:
        # MAE on the expected age alone collapses the softmax onto one age; a cross-entropy
        # against a label distribution around the true age (see age_distribution) keeps it spread.
        losses["age_distribution"] = keras.losses.CategoricalCrossentropy()
        weights["age_distribution"] = age_loss_weight

    if lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, decay_steps))
    if weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=losses,
        loss_weights=weights,
        metrics={"age": ["mae"], "gender": ["accuracy"]},
    )
    return model

"""The two-output convolutional network, built by one function of its hyperparameters.

Keras is imported inside the functions: the choices below are read by the
estimator's parameter constraints (and the command line built from them),
which should not cost a TensorFlow import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..quiet import import_tensorflow_quietly

if TYPE_CHECKING:
    import keras

ARCHITECTURES = ("seed", "vgg_bn")
AGE_HEADS = ("regression", "dex")
PRECISIONS = ("float32", "mixed_bfloat16")


def build_model(
    input_shape: tuple[int, int, int],
    *,
    architecture: str = "seed",
    filters: tuple[int, ...] = (32, 64, 128, 256),
    kernel_size: int = 3,
    dense_units: int = 256,
    dropout: float = 0.3,
    augment: bool = False,
    age_head: str = "regression",
    max_age: int = 120,
    precision: str = "float32",
    initial_age: float = 0.0,
    bottleneck: int = 0,
) -> keras.Model:
    """Build the age-and-gender CNN, uncompiled.

    ``architecture="seed"`` is the project's seed, faithfully: one
    convolution + max-pooling block per entry of ``filters``, a flatten, then
    one dense branch with dropout per head. ``"vgg_bn"`` has two convolutions
    with batch normalisation per block and global average pooling instead of
    the flatten. Both end in a ``gender`` head (sigmoid) and an ``age`` head
    (non-negative); :func:`skface.network.training.compile_for_training`
    gives them their losses, metrics and optimizer. Pixels are rescaled from 0-255 to 0-1 inside the model; convolutions and pooling use
    ``"same"`` padding so that any input size works.

    Parameters
    ----------
    input_shape : tuple of int
        ``(height, width, channels)`` of the input images.
    architecture : {"seed", "vgg_bn"}
        The trunk (see above).
    filters : tuple of int
        Filters of each convolution block.
    kernel_size : int
        Side of the square convolution kernels.
    dense_units : int
        Units of the dense layer of each head's branch.
    dropout : float
        Dropout rate after each dense layer.
    augment : bool
        Random flips, shifts, rotations, zoom and contrast while training
        (see :mod:`skface.network.augment`).
    age_head : {"regression", "dex"}
        ``"regression"``: one ReLU unit. ``"dex"``: a softmax over the ages
        0 to ``max_age`` whose expected value is the prediction.
    max_age : int
        Oldest age of the ``"dex"`` head.
    precision : {"float32", "mixed_bfloat16"}
        Compute type of the trunk; the heads stay in float32.
    initial_age : float
        Initial bias of the regression age output (the training median), so
        training starts from a sensible age rather than from 0.
    bottleneck : int
        With ``architecture="seed"``, a 1x1 convolution to this many channels
        before the flatten, which keeps the spatial layout but shrinks the
        dense layers (and the saved model) several times; 0 for none.

    Returns
    -------
    model : keras.Model
        Uncompiled model whose outputs are named ``age`` and ``gender`` (and
        ``age_distribution`` with the ``"dex"`` head).
    """
    import_tensorflow_quietly()
    import keras

    from .augment import augmentation

    policy = keras.DTypePolicy(precision)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if augment:
        x = augmentation(x)
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale", dtype=policy)(x)

    if architecture == "seed":
        for i, n in enumerate(filters, start=1):
            x = keras.layers.Conv2D(n, kernel_size, padding="same", activation="relu", name=f"conv_{i}",
                                    dtype=policy)(x)
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{i}", dtype=policy)(x)
        if bottleneck:
            x = keras.layers.Conv2D(bottleneck, 1, activation="relu", name="bottleneck", dtype=policy)(x)
        x = keras.layers.Flatten(name="flatten", dtype=policy)(x)
    else:
        for i, n in enumerate(filters, start=1):
            for j in (1, 2):
                x = keras.layers.Conv2D(n, kernel_size, padding="same", use_bias=False, name=f"conv_{i}_{j}",
                                        dtype=policy)(x)
                x = keras.layers.BatchNormalization(name=f"bn_{i}_{j}", dtype=policy)(x)
                x = keras.layers.Activation("relu", name=f"relu_{i}_{j}", dtype=policy)(x)
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{i}", dtype=policy)(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool", dtype=policy)(x)

    def branch(name):
        hidden = keras.layers.Dense(dense_units, activation="relu", name=f"{name}_dense", dtype=policy)(x)
        return keras.layers.Dropout(dropout, name=f"{name}_dropout", dtype=policy)(hidden)

    gender = keras.layers.Dense(1, activation="sigmoid", name="gender", dtype="float32")(branch("gender"))
    if age_head == "dex":
        probabilities = keras.layers.Dense(max_age + 1, activation="softmax", name="age_distribution",
                                           dtype="float32")(branch("age"))
        # The expected age: a fixed dot product with 0, 1, ..., max_age (set below, never trained).
        expectation = keras.layers.Dense(1, use_bias=False, trainable=False, name="age", dtype="float32")
        age = expectation(probabilities)
        expectation.set_weights([np.arange(max_age + 1, dtype="float32").reshape(-1, 1)])
    else:
        age = keras.layers.Dense(1, activation="relu", bias_initializer=keras.initializers.Constant(initial_age),
                                 name="age", dtype="float32")(branch("age"))
    outputs = {"age": age, "gender": gender}
    if age_head == "dex":
        outputs["age_distribution"] = probabilities
    return keras.Model(inputs, outputs, name=f"age_gender_{architecture}")


def age_distribution(ages, max_age: int = 120, sigma: float = 2.0) -> np.ndarray:
    """Target of the ``"dex"`` head's softmax: a normal distribution around each age over 0..max_age."""
    bins = np.arange(max_age + 1, dtype="float32")
    ages = np.clip(np.asarray(ages, dtype="float32"), 0, max_age)[:, None]
    density = np.exp(-0.5 * ((bins[None, :] - ages) / sigma) ** 2)
    return density / density.sum(axis=1, keepdims=True)


#: Ways :func:`save_network` can store the dense layers' weights in fewer bits (Keras's ``Model.quantize``).
QUANTIZATIONS = ("int8",)


def save_network(model: keras.Model, path, *, quantize: str | None = None) -> None:
    """Save the network's architecture and weights without the optimizer state, a third of the size.

    The saved network predicts; :meth:`AgeGenderCNN.fit` always builds and
    compiles a fresh one, so the optimizer state is never needed again.
    With ``quantize="int8"``, a copy whose dense layers hold int8 weights
    with a scale per output unit (Keras's ``Model.quantize``) is saved: the
    dense layers take a quarter of the space, and ``model`` is left as it is.
    """
    import keras

    network = keras.Model(model.input, model.output, name=model.name)
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize must be None or one of {QUANTIZATIONS}, got {quantize!r}.")
        network = keras.models.clone_model(network)
        network.set_weights(model.get_weights())
        network.quantize(quantize)
    network.save(path)


def load_network(path) -> keras.Model:
    """Load a network saved by :func:`save_network`."""
    import_tensorflow_quietly()
    import keras

    from . import augment  # noqa: F401  (registers skface's custom layers with Keras)

    return keras.models.load_model(path)

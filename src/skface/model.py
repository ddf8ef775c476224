"""The two-output convolutional network, built by one function of its hyperparameters."""

from __future__ import annotations

import keras


def build_model(
    input_shape: tuple[int, int, int],
    *,
    filters: tuple[int, ...] = (32, 64, 128, 256),
    kernel_size: int = 3,
    dense_units: int = 256,
    dropout: float = 0.3,
    learning_rate: float = 1e-3,
    age_loss_weight: float = 1.0,
    gender_loss_weight: float = 1.0,
    initial_age: float = 0.0,
) -> keras.Model:
    """Build and compile the seed's age-and-gender CNN.

    One convolution + max-pooling block per entry of ``filters``, a flatten,
    then one dense branch with dropout per head: ``gender`` (sigmoid, binary
    cross-entropy, accuracy) and ``age`` (ReLU so ages are non-negative, MAE
    loss and metric), trained with Adam. Pixels are rescaled from 0-255 to
    0-1 inside the model. Convolutions and pooling use ``"same"`` padding so
    that any input size works.

    Parameters
    ----------
    input_shape : tuple of int
        ``(height, width, channels)`` of the input images.
    filters : tuple of int
        Filters of each convolution block.
    kernel_size : int
        Side of the square convolution kernels.
    dense_units : int
        Units of the dense layer of each head's branch.
    dropout : float
        Dropout rate after each dense layer.
    learning_rate : float
        Adam's learning rate.
    age_loss_weight, gender_loss_weight : float
        Weights of the two losses in the total loss.
    initial_age : float
        Initial bias of the age output, so training starts from a sensible
        age (the training median) rather than from 0.

    Returns
    -------
    model : keras.Model
        Compiled model whose outputs are named ``age`` and ``gender``.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for i, n_filters in enumerate(filters, start=1):
        x = keras.layers.Conv2D(n_filters, kernel_size, padding="same", activation="relu", name=f"conv_{i}")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)

    def branch(name):
        hidden = keras.layers.Dense(dense_units, activation="relu", name=f"{name}_dense")(x)
        return keras.layers.Dropout(dropout, name=f"{name}_dropout")(hidden)

    gender = keras.layers.Dense(1, activation="sigmoid", name="gender")(branch("gender"))
    age = keras.layers.Dense(
        1,
        activation="relu",
        bias_initializer=keras.initializers.Constant(initial_age),
        name="age",
    )(branch("age"))
    model = keras.Model(inputs, {"age": age, "gender": gender}, name="age_gender_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={"age": "mae", "gender": "binary_crossentropy"},
        loss_weights={"age": age_loss_weight, "gender": gender_loss_weight},
        metrics={"age": ["mae"], "gender": ["accuracy"]},
    )
    return model

"""Training-time augmentation of face batches, as Keras layers that are inactive at inference."""

from __future__ import annotations

import math

import keras


@keras.saving.register_keras_serializable(package="skface")
class RandomAffine(keras.layers.Layer):
    """Random rotation, zoom and shift of each image, resampled once.

    Keras's ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation``
    each resample the whole batch; composing the three into one affine
    transform per image gives the same family of distortions for a third of
    the cost, which on a CPU is a sizeable share of a training step.
    Inactive unless ``training=True``.

    Parameters
    ----------
    rotation : float
        Largest rotation, as a fraction of a full turn (0.03 is about 11 degrees).
    zoom : float
        Largest relative zoom in or out.
    shift : float
        Largest shift, as a fraction of the image's height and width.
    seed : int or None
        Seed of the layer's random draws.
    """

    def __init__(self, rotation: float = 0.03, zoom: float = 0.1, shift: float = 0.06, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift, self.seed = rotation, zoom, shift, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        ops = keras.ops
        shape = ops.shape(images)
        n = shape[0]
        height, width = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")

        def uniform(limit):
            return keras.random.uniform((n,), -limit, limit, seed=self.seed_generator)

        angle = uniform(self.rotation * 2 * math.pi)
        scale = 1.0 + uniform(self.zoom)
        dx, dy = uniform(self.shift) * width, uniform(self.shift) * height
        # Output pixel (x, y) samples the input at centre + scale * R(angle) (p - centre) + shift.
        cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
        cx, cy = (width - 1) / 2, (height - 1) / 2
        zeros = ops.zeros_like(cos)
        transform = ops.stack(
            [cos, -sin, cx - cos * cx + sin * cy + dx, sin, cos, cy - sin * cx - cos * cy + dy, zeros, zeros], axis=1
        )
        return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom, "shift": self.shift,
                "seed": self.seed}


def augmentation(x):
    """Apply the training augmentation to the Keras tensor ``x``: flip, one random affine, contrast."""
    x = keras.layers.RandomFlip("horizontal", name="flip")(x)
    x = RandomAffine(name="affine")(x)
    return keras.layers.RandomContrast(0.2, value_range=(0, 255), name="contrast")(x)

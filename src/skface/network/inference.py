"""Prediction through a fitted network: the test-time views of a batch and the compiled forward pass over them.

The compiled functions are cached per Keras model, outside the estimator, so
that predicting leaves the estimator as it was (scikit-learn's
``check_dict_unchanged``) and a pickled estimator holds no traced graph.
"""

from __future__ import annotations

import reprlib
import weakref
from numbers import Real

import numpy as np

# Images per call of the compiled network: at most PREDICT_CHUNK, and fewer where their test-time views
# would hold more than PREDICT_PIXELS pixels, which bounds the memory of one call whatever the image size
# and the number of views (the shipped model's six views with a zoom pair, of 64 80x80 images, are 2.46
# million pixels).
PREDICT_CHUNK = 64
PREDICT_PIXELS = 2_500_000

# Keras model -> {(input shape, zoom factors, flip): concrete function}. A function refers to
# its model only weakly (see compiled_forward), so an entry goes when its model does.
_FORWARD_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# Most zoom factors a prediction takes: with the mirror of each, 18 views of every image, which
# already costs 18 times the network's work; a longer list (a tampered saved model's) is refused.
MAX_ZOOM_FACTORS = 8


def zoom_factors(zoom_tta) -> tuple[float, ...]:
    """``zoom_tta`` checked (at most 8 factors between 0.5 and 2), as a tuple of floats; None is ()."""
    if zoom_tta is None:
        return ()
    if (isinstance(zoom_tta, (str, bytes)) or not hasattr(zoom_tta, "__len__")
            or len(zoom_tta) > MAX_ZOOM_FACTORS
            or not all(isinstance(z, Real) and not isinstance(z, bool) and 0.5 <= z <= 2 for z in zoom_tta)):
        raise ValueError(f"zoom_tta must be a tuple of at most {MAX_ZOOM_FACTORS} zoom factors between 0.5 and 2, "
                         f"e.g. (1.075, 0.935), or () for none; got {reprlib.repr(zoom_tta)}.")
    return tuple(float(z) for z in zoom_tta)


def views(images, zooms: tuple[float, ...], flip: bool) -> list:
    """The test-time views of a batch: itself, one zoom per factor, and the mirror of each when ``flip``.

    A zoom factor above 1 enlarges the face about the centre (the border is
    cropped); below 1 it shrinks it (edge pixels are repeated), with the same
    bilinear resampling as the training augmentation.
    """
    import keras

    ops = keras.ops
    out = [images]
    if zooms:
        height, width = int(images.shape[1]), int(images.shape[2])
        cx, cy = (width - 1) / 2, (height - 1) / 2
        for zoom in zooms:
            scale = 1.0 / zoom  # output pixel p samples the input at centre + scale * (p - centre)
            transform = ops.tile(ops.convert_to_tensor([[scale, 0.0, cx * (1 - scale), 0.0, scale, cy * (1 - scale),
                                                         0.0, 0.0]], dtype="float32"), (ops.shape(images)[0], 1))
            out.append(ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest"))
    if flip:
        out += [ops.flip(view, axis=2) for view in out]
    return out


def compiled_forward(model, input_shape: tuple[int, ...], zooms: tuple[float, ...], flip: bool):
    """Inference with test-time views as a compiled TensorFlow function, traced once per model and views.

    ``model.predict`` builds a data pipeline per call and an eager call runs
    layer by layer from Python, each costing milliseconds; a traced graph
    answers a few images several times faster, and large batches, in
    chunks, about twice as fast as ``model.predict`` (whose input threads
    compete with the network's on a small CPU). The graph is traced once,
    for any batch size, and called as a concrete function: that skips the
    per-call signature matching of a ``tf.function`` (about 0.4 ms).
    The function returns the mean over the views of ``age`` and of ``gender``,
    and the spread of the age estimate: the standard deviation of the views'
    mean distribution over ages with the ``"dex"`` head, 1 with the
    regression head (which has no distribution).
    """
    functions = _FORWARD_CACHE.get(model)
    if functions is None:
        functions = _FORWARD_CACHE[model] = {}
    key = (tuple(input_shape), zooms, flip)
    if key not in functions:
        import tensorflow as tf

        # Traced right away, so the model is needed only while tracing: a weak reference
        # lets the cache entry (keyed by the model) go when the model does.
        model_ref = weakref.ref(model)

        def forward(images):
            batch = views(images, zooms, flip)
            out = model_ref()(tf.concat(batch, axis=0), training=False)

            def mean_over_views(values):
                values = tf.cast(values, tf.float32)
                return tf.reduce_mean(tf.reshape(values, (len(batch), -1, *values.shape[1:])), axis=0)

            age, gender = tf.reshape(mean_over_views(out["age"]), (-1,)), tf.reshape(mean_over_views(out["gender"]), (-1,))
            if "age_distribution" in out:  # the spread of the views' mean distribution over ages
                distribution = mean_over_views(out["age_distribution"])
                ages = tf.range(tf.shape(distribution)[1], dtype=tf.float32)
                mean = tf.reduce_sum(distribution * ages, axis=1, keepdims=True)
                spread = tf.sqrt(tf.reduce_sum(distribution * tf.square(ages - mean), axis=1))
            else:
                spread = tf.ones_like(age)
            return age, gender, spread

        spec = tf.TensorSpec((None, *input_shape), tf.float32)
        functions[key] = tf.function(forward).get_concrete_function(spec)
    return functions[key]


def images_per_call(image_shape: tuple[int, ...], zooms: tuple[float, ...], flip: bool) -> int:
    """How many images go through the network in one call: PREDICT_CHUNK, or fewer for PREDICT_PIXELS."""
    n_views = (1 + len(zooms)) * (2 if flip else 1)
    return max(1, min(PREDICT_CHUNK, PREDICT_PIXELS // (n_views * int(image_shape[0]) * int(image_shape[1]))))


def predict_outputs(model, images: np.ndarray, *, zooms: tuple[float, ...] = (), flip: bool = False,
                    chunk: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Age, P(female) and the age's spread for each image of a float32 batch ``(n, h, w, c)``.

    Each is averaged over the image's test-time views (see
    :func:`compiled_forward`). One compiled call per ``chunk`` images (by
    default :func:`images_per_call`): the views of its images ride in the
    same batch.
    """
    import tensorflow as tf

    chunk = chunk or images_per_call(images.shape[1:], zooms, flip)
    forward = compiled_forward(model, images.shape[1:], zooms, flip)
    outputs = [forward(tf.convert_to_tensor(images[start:start + chunk])) for start in range(0, len(images), chunk)]
    age, p_female, spread = (np.concatenate([np.asarray(out[i], dtype=np.float64) for out in outputs])
                             for i in (0, 1, 2))
    return age, p_female, spread


"""What a network costs and what the machine offers: operations per image, and a matrix product's rate."""

from __future__ import annotations

import statistics
import subprocess
import time

import keras
import numpy as np


def forward_flops(model: keras.Model) -> int:
    """Floating-point operations of one image's forward pass through the convolutions and trained dense layers.

    Counts two per multiply-add (a convolution: output height x width x kernel
    height x width x input channels x filters); pooling, activations and
    normalisation are left out. A training step costs about three times this:
    the forward pass, then the gradients with respect to inputs and weights.

    Parameters
    ----------
    model : keras.Model
        A built network; its layers are walked at the top level only.

    Returns
    -------
    flops : int
        Floating-point operations per image.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width = layer.output.shape[1:3]
            total += 2 * height * width * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Dense) and layer.trainable:
            total += 2 * int(np.prod(layer.kernel.shape))
    return int(total)


def matmul_gflops(dtype: str, size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of a ``size`` x ``size`` matrix product in ``dtype``: this machine's practical peak.

    Parameters
    ----------
    dtype : str
        The compute type, as TensorFlow names it (``"float32"``, ``"bfloat16"``).
    size : int, default=2048
        Side of the two square matrices.
    repeats : int, default=5
        Timed products after one untimed one (which traces the function and warms the caches).

    Returns
    -------
    gflops : float
        The median rate over the timed products, in 1e9 floating-point operations per second.
    """
    import tensorflow as tf

    a = tf.random.uniform((size, size), dtype="float32")
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    product = tf.function(tf.linalg.matmul)
    product(a, b).numpy()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def cpu_name() -> str:
    """The CPU's model name as ``lscpu`` gives it (e.g. ``"AMD EPYC 9R14"``), else ``"unknown"``; for benchmarks."""
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                "unknown")

"""Benchmark training throughput: Keras's NumPy input pipeline against skface's, in the same run.

Builds the network of a named configuration (see skface.configurations) and
trains it for whole epochs on the same images, alternating between the two
ways of feeding it: Keras's own pipeline for NumPy arrays (``model.fit(X, y,
batch_size=...)``, the baseline) and ``skface.network.input_pipeline.array_dataset`` (what
``AgeGenderCNN.fit`` uses). Alternating keeps a slow spell of the host from
landing on one side only. Prints images per second per epoch, their
medians, and the ratio.

Then puts the figures against the machine: the network's floating-point
operations per image, the rate that skface's pipeline reaches with them, and
the rate of one large matrix product in the network's compute type, measured
in the same run (how near the step runs to what the CPU can do).
"""

import argparse
import inspect
import statistics
import sys
import time

import numpy as np

from skface.cli.options import whole_number
from skface.quiet import import_tensorflow_quietly


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="../shared/data/utkface-crop_part1",
                        help="UTKFace folder or archive, or 'synthetic'")
    parser.add_argument("--config", default="narrow80", help="configuration whose network and input size to train")
    parser.add_argument("--n-images", type=whole_number, default=2048, help="images per epoch")
    parser.add_argument("--rounds", type=whole_number, default=5, help="timed epochs of each pipeline")
    parser.add_argument("--seed", type=whole_number, default=0, help="seed of the data and the network")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import_tensorflow_quietly()
    import keras

    from skface.configurations import get_configuration
    from skface.data.sources import resolve_data
    from skface.network.architecture import age_distribution, build_model
    from skface.network.input_pipeline import array_dataset
    from skface.network.measure import forward_flops, matmul_gflops
    from skface.network.training import compile_for_training

    config = get_configuration(args.config)
    data = resolve_data(args.data, image_size=config["image_size"], color=config["color"],
                        n_synthetic=args.n_images, random_state=args.seed)
    X = np.asarray(data.images[: args.n_images], dtype="float32")
    age, gender = data.target[: len(X), 0], data.target[: len(X), 1]
    params = config["estimator"]
    keras.utils.set_random_seed(args.seed)
    # The configuration's parameters that shape the network and its training step, as AgeGenderCNN.fit passes them.
    model_params = {k: v for k, v in params.items() if k in inspect.signature(build_model).parameters}
    compile_params = {k: v for k, v in params.items() if k in inspect.signature(compile_for_training).parameters}
    batch_size = params.get("batch_size", 32)
    # The learning-rate schedule (cosine decay in the shipped recipe) spans every step this benchmark takes:
    # a warm-up epoch and the timed rounds, for each of the two pipelines.
    steps = 2 * (args.rounds + 1) * int(np.ceil(len(X) / batch_size))
    model = build_model(X.shape[1:], **model_params, initial_age=float(np.median(age)))
    compile_for_training(model, **compile_params, decay_steps=steps)
    targets = {"age": age, "gender": gender}
    if params.get("age_head") == "dex":
        targets["age_distribution"] = age_distribution(age)
    feeds = {
        "keras numpy": lambda: model.fit(X, targets, batch_size=batch_size, shuffle=True, epochs=1, verbose=0),
        "skface array_dataset": lambda: model.fit(
            array_dataset(X, targets, batch_size=batch_size, shuffle=True, seed=args.seed), shuffle=False, epochs=1,
            verbose=0),
    }
    print(f"{args.config}: {X.shape[1]} px {config['color']}, {len(X)} images per epoch, batch {batch_size}, "
          f"{args.rounds} epochs each (after one warm-up epoch each)", flush=True)
    rates = {name: [] for name in feeds}
    for name, run in feeds.items():
        run()  # traces the training step for this input signature
    for _ in range(args.rounds):
        for name, run in feeds.items():
            start = time.perf_counter()
            run()
            rates[name].append(len(X) / (time.perf_counter() - start))
    base = statistics.median(rates["keras numpy"])
    print(f"\n{'pipeline':<24}{'median img/s':>14}{'vs keras':>10}   per epoch")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:<24}{median:>14.0f}{median / base:>9.2f}x   {' '.join(f'{v:.0f}' for v in values)}")

    flops = forward_flops(model)
    compute = "bfloat16" if params.get("precision") == "mixed_bfloat16" else "float32"
    step = 3 * flops * statistics.median(rates["skface array_dataset"]) / 1e9
    peak = matmul_gflops(compute)
    print(f"\nnetwork: {flops / 1e6:.0f} MFLOP per image forward, about {3 * flops / 1e6:.0f} to train on it")
    print(f"training step (skface array_dataset): {step:.0f} GFLOP/s; a 2048x2048 {compute} matrix product on this "
          f"machine: {peak:.0f} GFLOP/s; the step runs at {step / peak:.2f}x of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())

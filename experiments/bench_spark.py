"""Benchmark scoring on Spark against scoring in process: the same N image files, the same served model.

The files are the first N UTKFace crops of --data when that folder exists,
else N generated faces written as JPEG files. In process, the served model
(mlflow.pyfunc, as `mlflow models serve` loads it) answers them all, files
read and decoded included. On Spark, skface.spark.score_images answers them
on a local session (local[--cores]), and the run is split where Spark's time
goes:

- session start-up: the JVM and the SparkContext;
- model shipping: the driver writes or downloads the MLflow model and zips it
  for the executors (score_images itself);
- model load per Python worker: the first job less a warm one; each worker
  imports TensorFlow and loads the model once, all workers at the same time;
- warm jobs: the scoring itself, once every worker holds the model, beside
  the same job without the model (the files read and dropped): Spark's own
  cost of a pass;
- per-batch overhead: the same warm job with the model handed batches of
  --small-batch images instead of one batch per task (Spark's
  spark.sql.execution.arrow.maxRecordsPerBatch), over the extra batches.

Prints images/s in process and on Spark (warm, and end to end with start-up),
their ratio, and the throughput of one task slot, from which a cluster's is
reckoned (README, "When one machine is not enough").
"""

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from skface.cli.options import whole_number
from skface.quiet import import_tensorflow_quietly


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/utkface-crop_part1"),
                        help="a folder of face images (UTKFace crops); generated faces when it does not exist "
                             "(default: %(default)s)")
    parser.add_argument("--n", type=whole_number, default=1000, help="images to score (default: %(default)s)")
    parser.add_argument("--model", default=None,
                        help="an MLflow model URI, an MLflow model folder or a folder saved by `skface train --save` "
                             "(default: the pretrained model)")
    parser.add_argument("--crops", action="store_true", help="answer each image whole, without the face step")
    parser.add_argument("--cores", type=whole_number, default=os.cpu_count(),
                        help="Spark's local cores, local[CORES] (default: every core, %(default)s)")
    parser.add_argument("--small-batch", type=whole_number, default=8,
                        help="images a batch in the run that measures the per-batch overhead (default: %(default)s)")
    parser.add_argument("--repeats", type=whole_number, default=2,
                        help="warm runs of each kind, of which the median counts (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.cores < 1 or args.small_batch < 1 or args.repeats < 1:
        parser.error("--n, --cores, --small-batch and --repeats must be at least 1.")
    return args


def image_files(data: Path, n: int, folder: Path) -> tuple[str, list[Path]]:
    """N image files copied into ``folder`` (so that Spark reads exactly those), and what they are."""
    folder.mkdir()
    if data.is_dir():
        sources = sorted(p for p in data.iterdir() if p.is_file())[:n]
        for source in sources:
            shutil.copy(source, folder / source.name)
        what = f"{len(sources)} files of {data}"
    else:
        from skface import write_synthetic_utkface

        write_synthetic_utkface(folder, n, image_size=200, random_state=0)
        what = f"{n} generated faces, 200 px JPEG ({data} is absent)"
    return what, sorted(folder.iterdir())


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    import_tensorflow_quietly()
    import mlflow
    import pandas as pd

    from skface.exceptions import SparkUnavailableError
    from skface.network.measure import cpu_name
    from skface.spark import require_spark, score_images, spark_session
    from skface.tracking.pyfunc import as_mlflow_model

    try:
        require_spark()
    except SparkUnavailableError as exc:
        raise SystemExit(f"bench_spark: {exc}") from None
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    with tempfile.TemporaryDirectory(prefix="bench-spark-") as scratch:
        what, files = image_files(args.data, args.n, Path(scratch) / "images")
        n = len(files)
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; "
              f"{what}; model: {args.model or 'the pretrained model'}{', crops' if args.crops else ''}", flush=True)

        # In process: the served model, loaded as a scoring server (or one Spark worker) loads it.
        uri = as_mlflow_model(args.model, Path(scratch) / "model")
        load_in_process = _seconds(lambda: mlflow.pyfunc.load_model(uri))
        model = mlflow.pyfunc.load_model(uri)
        params = {"crops": args.crops}
        model.predict(pd.DataFrame({"image": [files[0].read_bytes()]}), params=params)
        in_process = [_seconds(lambda: model.predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}),
                                                     params=params)) for _ in range(args.repeats)]
        rate_in_process = n / statistics.median(in_process)

        ours = SparkSession.getActiveSession() is None
        started = time.perf_counter()
        spark = spark_session(f"local[{args.cores}]", app_name="skface-bench",
                              config={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
        session = time.perf_counter() - started
        try:
            shipped = time.perf_counter()
            scores = score_images(spark, uri, str(Path(scratch) / "images"), crops=args.crops)
            shipping = time.perf_counter() - shipped
            # Spark's own partitions of the files (about 32 small files a task): rows a task.
            rows = [row["count"] for row in scores.select(F.spark_partition_id().alias("task")).groupBy("task")
                    .count().collect()]

            def job():
                scores.write.format("noop").mode("overwrite").save()

            def read_only():  # the same job without the model: Spark's own cost of a pass over the files
                scores.select("path").write.format("noop").mode("overwrite").save()

            read_only()
            reading = statistics.median(_seconds(read_only) for _ in range(args.repeats))

            first = _seconds(job)
            warm = [_seconds(job) for _ in range(args.repeats)]
            batches_key = "spark.sql.execution.arrow.maxRecordsPerBatch"
            default_batch = spark.conf.get(batches_key)
            spark.conf.set(batches_key, str(args.small_batch))
            try:
                small = [_seconds(job) for _ in range(args.repeats)]
            finally:
                spark.conf.set(batches_key, default_batch)
        finally:
            if ours:
                spark.stop()

    warm_time, small_time = statistics.median(warm), statistics.median(small)
    rate_spark = n / warm_time
    # One batch a task (the default) against ceil(rows / small) batches a task, on `cores` task slots at once.
    extra_batches = sum(math.ceil(count / args.small_batch) - 1 for count in rows)
    per_batch = (small_time - warm_time) * args.cores / extra_batches if extra_batches else float("nan")
    end_to_end = session + shipping + first

    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}\n{'':<58}{'value':>10}")
    print(f"{'in process: model load (s)':<58}{load_in_process:>10.2f}")
    print(f"{'in process: images/s':<58}{rate_in_process:>10.1f}")
    print(f"{f'Spark local[{args.cores}]: session start-up (s)':<58}{session:>10.2f}")
    print(f"{'Spark: model shipping in the driver (s)':<58}{shipping:>10.2f}")
    print(f"{'Spark: first job, workers start and load the model (s)':<58}{first:>10.2f}")
    print(f"{f'Spark: warm job, {len(rows)} tasks of about {round(n / len(rows))} images (s)':<58}{warm_time:>10.2f}")
    print(f"{'Spark: the same job without the model, files read only (s)':<58}{reading:>10.2f}")
    print(f"{'Spark: model load per Python worker, first - warm (s)':<58}{first - warm_time:>10.2f}")
    print(f"{f'Spark: warm job in batches of {args.small_batch} (s)':<58}{small_time:>10.2f}")
    print(f"{'Spark: overhead per batch (ms)':<58}{1000 * per_batch:>10.1f}")
    print(f"{'Spark: images/s, warm':<58}{rate_spark:>10.1f}")
    print(f"{'Spark: images/s, one run from nothing (start-up, shipping, job)':<58}{n / end_to_end:>10.1f}")
    print(f"{'Spark: images/s per task slot, warm':<58}{rate_spark / args.cores:>10.1f}")
    print(f"{'ratio Spark warm / in process':<58}{rate_spark / rate_in_process:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Past one machine on Apache Spark: the served model over a DataFrame of images, and searches as Spark tasks.

:func:`score_images` runs the logged pyfunc model (:mod:`skface.tracking.pyfunc`)
on every row of a DataFrame of images, or of the files at a path. The
model's own per-row logic answers each image or names its error, so a bad
file is a row with an error, never a failed job. Each executor's Python
worker loads the model once, with MLflow's ``SparkModelCache`` (the
per-process cache that ``mlflow.pyfunc.spark_udf`` uses on clusters), and
keeps it for every batch and every later job. ``spark_udf`` itself is not
used: in local mode it loads the model again for every task.

:func:`joblib_backend` runs joblib's work, a scikit-learn ``GridSearchCV``
or the sweep's trials (:func:`skface.tracking.recipes.run_sweep`), as Spark
tasks through ``joblibspark``.

pyspark is imported only when a function here runs, so skface imports
without it: ``pip install "skface[spark]"`` adds pyspark and joblibspark;
Spark also needs a Java runtime, 17 or newer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .exceptions import ImageSourceError, SparkUnavailableError
from .network.pipeline import ROW_FIELDS
from .tracking.pyfunc import IMAGE_COLUMN, as_mlflow_model, download_model

#: The Spark type of one answer: the served model's fields (:data:`skface.network.pipeline.ROW_FIELDS`),
#: with ``faces`` a list of structs, one per face, as Parquet and Spark SQL read them.
RESULT_SCHEMA = (
    "age double, age_low double, age_high double, gender string, gender_probability double, error string, "
    "faces array<struct<box: array<double>, confidence: double, age: double, age_low: double, age_high: double, "
    "gender: string, gender_probability: double>>"
)

#: Spark's log configuration in the sessions :func:`spark_session` starts: errors only.
LOG_CONFIG = Path(__file__).with_name("spark-log4j2.properties")

_INSTALL = 'pip install "skface[spark]" (pyspark and joblibspark)'


def require_spark() -> None:
    """Check that pyspark imports and that a Java runtime is found.

    Raises
    ------
    SparkUnavailableError
        If pyspark is not installed, or no ``java`` is found (on ``PATH``
        or under ``JAVA_HOME``); the message says what to install.
    """
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailableError(f"pyspark is not installed; install it with {_INSTALL}.") from None
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        return  # under spark-submit or a pyspark shell: the JVM runs already
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home, "bin", "java") if java_home else shutil.which("java")
    if java is None or not Path(java).is_file():
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no java on PATH, and JAVA_HOME is not set"
        raise SparkUnavailableError(
            f"Spark needs a Java runtime, 17 or newer, and none was found ({where}); install one, e.g. "
            "`apt-get install openjdk-17-jre-headless` on Debian or Ubuntu, or set JAVA_HOME to one."
        )


@contextlib.contextmanager
def _pyspark_quietly():
    # PySpark 4 warns on every pandas feature under pandas 3, which skface's use of it does not depend on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        yield


def spark_session(master: str | None = None, *, app_name: str = "skface", config: dict | None = None):
    """The active Spark session, or a new one whose log keeps to errors.

    Parameters
    ----------
    master : str, optional
        Where to run: ``local[4]`` (four cores of this machine),
        ``spark://host:7077``, ``yarn``, ``k8s://...``. By default, the
        master that ``spark-submit`` or the environment variable ``MASTER``
        names, else ``local[*]``, every core of this machine.
    app_name : str, default="skface"
        The application's name in Spark's UI.
    config : dict, optional
        More Spark settings, e.g. ``{"spark.executor.memory": "4g"}``.

    Returns
    -------
    spark : pyspark.sql.SparkSession
        An active session as it is (``master`` and ``config`` then change
        nothing); else a new one that logs errors only (its log4j
        configuration is :data:`LOG_CONFIG`, its log level ``ERROR``).

    Raises
    ------
    SparkUnavailableError
        If pyspark or Java is missing, or Java cannot start Spark (older
        than 17).
    """
    require_spark()
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = {}
    if not os.environ.get("PYSPARK_GATEWAY_PORT"):  # not under spark-submit: this process starts the JVM
        master = master or os.environ.get("MASTER") or "local[*]"
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}"
    if master is not None and master.startswith("local"):
        # Local Python workers run this interpreter, whichever `python3` comes first on PATH.
        settings["spark.pyspark.python"] = sys.executable
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in {**settings, **(config or {})}.items():
        builder = builder.config(key, value)
    try:
        with _pyspark_quietly():
            spark = builder.getOrCreate()
    except PySparkRuntimeError as exc:
        if exc.getCondition() != "JAVA_GATEWAY_EXITED":
            raise
        raise SparkUnavailableError(
            "Java could not start Spark (see its message above); Spark 4 needs Java 17 or newer, and "
            "`java -version` says which one runs: install one, e.g. `apt-get install openjdk-17-jre-headless`, "
            "or set JAVA_HOME to one."
        ) from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def score_images(spark, model_uri: str | None, images, *, image_column: str = "content", crops: bool = False):
    """Age and gender for every image of a DataFrame, or of the files at a path, with the served model on Spark.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        A classic session (local or a cluster; not Spark Connect).
    model_uri : str or None
        The model: an MLflow model URI (``models:/skface@champion``,
        ``runs:/<run_id>/model``, ``s3://...``), read by the driver from the
        tracking server and artifact store in use; a local MLflow model
        folder; a folder saved by :func:`skface.save_pretrained`; or None
        for the pretrained model shipped with the package.
    images : pyspark.sql.DataFrame or str
        A DataFrame with a column of images, or a folder, glob or URI of
        image files (``photos/``, ``photos/*.jpg``,
        ``s3a://bucket/photos/``), read recursively with Spark's
        ``binaryFile`` source.
    image_column : str, default="content"
        The DataFrame's column of images: binary (the files' bytes, as
        ``binaryFile`` reads them into ``content``) or string (their base64,
        with or without line breaks: Spark's ``base64()`` breaks lines every
        76 characters).
    crops : bool, default=False
        The images are tight face crops: answer each whole, without looking
        for faces.

    Returns
    -------
    scores : pyspark.sql.DataFrame
        Lazy, like any DataFrame: the model runs at an action (``write``,
        ``collect``, ``count``). Every input column but the image column
        (for files: ``path``), then the served model's answer
        (:data:`RESULT_SCHEMA`): ``age``, ``age_low`` and ``age_high`` (the
        80% range; null for an uncalibrated model), ``gender``,
        ``gender_probability``
        (of the predicted gender), ``error`` (empty when the image was
        answered) and ``faces``, every face found, largest first, each a
        struct of ``box`` (``[x, y, width, height]``; null for an image
        answered whole), ``confidence``, ``age``, ``age_low``, ``age_high``,
        ``gender`` and ``gender_probability``; the row's own answer is its first face's.
        A row whose image cannot be read, or has no face, has ``error`` set
        and nulls.

    Raises
    ------
    SparkUnavailableError
        If pyspark is not installed.
    ModelNotFoundError
        If ``model_uri`` does not resolve.
    ImageSourceError
        If no file matches the path.
    ValueError
        If the DataFrame has no such image column, or a column of another
        type, or already has a column of the answer.

    Notes
    -----
    The model is zipped once a call and sent to every executor; each
    executor's Python worker loads it at its first batch and keeps it for
    every later batch, and for later actions on the returned DataFrame.
    The executors need the model's dependencies (skface's, e.g. by
    installing skface there); skface's own code travels with the model.
    Batches follow Spark's partitions and
    ``spark.sql.execution.arrow.maxRecordsPerBatch``.

    Examples
    --------
    >>> from skface.spark import score_images, spark_session
    >>> spark = spark_session()  # doctest: +SKIP
    >>> scores = score_images(spark, "models:/skface@champion", "photos/")  # doctest: +SKIP
    >>> scores.write.parquet("scores.parquet")  # doctest: +SKIP
    """
    require_spark()
    from pyspark.sql import DataFrame

    frame = images if isinstance(images, DataFrame) else _read_files(spark, str(images))
    kinds = dict(frame.dtypes)
    if image_column not in kinds:
        raise ValueError(f"the DataFrame has no column {image_column!r} (its columns: {frame.columns}); pass "
                         "image_column=NAME, the column of image bytes or of their base64.")
    if kinds[image_column] not in ("binary", "string"):
        raise ValueError(f"the column {image_column!r} holds {kinds[image_column]}; expected binary (the bytes of "
                         "image files, as the binaryFile source reads them) or string (their base64).")
    kept = [name for name in frame.columns if name != image_column]
    clash = sorted(set(kept) & set(ROW_FIELDS))
    if clash:
        raise ValueError(f"the DataFrame already has the answer's columns {clash}; rename or drop them first.")
    with tempfile.TemporaryDirectory(prefix="skface-spark-") as scratch:
        folder = as_mlflow_model(model_uri, Path(scratch) / "model")
        if not Path(folder, "MLmodel").is_file():
            download = Path(scratch, "download")
            download.mkdir()
            folder = download_model(folder, download)
        answer = _answer_udf(spark, str(folder), crops)
    answered = "__skface_answer"
    return (frame.select(*kept, answer(frame[image_column]).alias(answered))
            .select(*kept, *(f"{answered}.{field}" for field in ROW_FIELDS)))


def _read_files(spark, source: str):
    """The files at ``source`` as ``path`` and ``content`` columns, with Spark's binaryFile source."""
    from pyspark.errors import AnalysisException

    try:
        files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(source)
    except AnalysisException as exc:
        if exc.getCondition() != "PATH_NOT_FOUND":
            raise
        raise ImageSourceError(f"no file matches {source}; pass a folder, a glob such as 'photos/*.jpg', or a URI "
                               "that Spark reads (hdfs://, s3a://, ...).") from None
    return files.select("path", "content")


def _answer_udf(spark, folder: str, crops: bool):
    """A pandas UDF that answers a column of images with the MLflow model in ``folder``."""
    from mlflow.pyfunc.spark_model_cache import SparkModelCache
    from pyspark.sql.functions import pandas_udf

    # Zipped into a file of its own and served to the executors, so ``folder`` may go once this returns.
    archive = SparkModelCache.add_local_model(spark, folder)
    params = {"crops": crops}

    # Defined here, it travels by value: executors need MLflow and the model's dependencies, and the
    # model brings skface's code.
    def answer(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        # Once per Python worker: its later batches, tasks and jobs find the model in the cache.
        model, _ = SparkModelCache.get_or_load(archive)
        for images in batches:
            yield model.predict(pd.DataFrame({IMAGE_COLUMN: images}), params=params)

    with _pyspark_quietly():
        return pandas_udf(answer, RESULT_SCHEMA)


@contextlib.contextmanager
def joblib_backend(n_jobs: int = -1):
    """Run joblib's work inside the block as Spark tasks, through ``joblibspark``.

    ``GridSearchCV``, ``cross_val_score`` and the sweep's trials then fit on
    the executors of the active Spark session (one is started with
    :func:`spark_session` when none is active). Inside the block this is
    ``joblib.parallel_backend("spark", n_jobs=n_jobs)`` after
    ``joblibspark.register_spark()``, with joblibspark's notices about local
    mode left out.

    Parameters
    ----------
    n_jobs : int, default=-1
        Tasks at a time; -1 is as many as the executors run at once.

    Raises
    ------
    SparkUnavailableError
        If pyspark, joblibspark or Java is missing.
    """
    spark_session()
    try:
        from joblibspark import register_spark
    except ImportError:
        raise SparkUnavailableError(f"joblibspark is not installed; install it with {_INSTALL}.") from None
    from joblib import parallel_backend

    register_spark()
    with warnings.catch_warnings():
        # Said on every search in local mode, where there is no stage-level scheduling to use, and by each
        # of its threads; neither changes what runs.
        warnings.filterwarnings("ignore", message="Spark local mode doesn't support stage-level scheduling",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message="Spark session is not provided", category=UserWarning)
        with _pyspark_quietly(), parallel_backend("spark", n_jobs=n_jobs):
            yield

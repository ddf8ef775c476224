"""skface on Apache Spark, for real: a local Spark session (``local[2]``) scores files through a logged model,
and searches run their fits as Spark tasks.

The tests that need Spark skip only where pyspark is not installed or no Java runtime is found (``.ci/run``
installs one); the error messages for those cases are tested everywhere.
"""

import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from skface import AgeGenderCNN, ImageSourceError, SparkUnavailableError, make_synthetic_faces, save_pretrained
from skface.network.pipeline import ROW_FIELDS, make_pipeline
from tests.conftest import TINY

from .scripts import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _pythons_ctrl_c():
    """SparkContext installs its own Ctrl-C handler, which stays when the session stops, whichever test started
    it: the modules after this one get Python's back."""
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def spark():
    """One quiet local Spark session for the module: two cores, no UI, no progress bars."""
    pytest.importorskip("pyspark")
    pytest.importorskip("joblibspark")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.skip("Spark needs a Java runtime (17 or newer) and none is on PATH; .ci/run installs one")
    from skface.spark import spark_session

    session = spark_session("local[2]", app_name="skface-tests", config={
        "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", "spark.driver.memory": "1g",
        "spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def pipeline():
    """A tiny network fitted on a few synthetic faces, behind the face step, as the served model answers."""
    X, y = make_synthetic_faces(60, image_size=16, random_state=0)
    return make_pipeline(AgeGenderCNN(**TINY).fit(X, y), image_size=16, color="grayscale")


@pytest.fixture(scope="module")
def logged(store, pipeline):
    """The pipeline logged as a training run logs it: its model URI."""
    from skface.tracking.pyfunc import log_model

    mlflow.set_experiment("spark-test")
    with mlflow.start_run():
        return log_model(pipeline).model_uri


def _encoded(array, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of good and broken files, one of them in a subfolder."""
    folder = tmp_path_factory.mktemp("photos")
    faces, _ = make_synthetic_faces(3, image_size=48, color="rgb", random_state=3)
    (folder / "a.png").write_bytes(_encoded(faces[0], "PNG"))
    (folder / "b.jpg").write_bytes(_encoded(faces[1], "JPEG"))
    (folder / "more").mkdir()
    (folder / "more" / "c.png").write_bytes(_encoded(faces[2], "PNG"))
    shutil.copy(REPO / "tests" / "data" / "astronaut.jpg", folder / "astronaut.jpg")  # a photo with a face
    (folder / "corrupt.png").write_bytes(_encoded(faces[0], "PNG")[:200])
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")  # Spark's file sources skip empty files: it has no row
    (folder / "wide.png").write_bytes(_encoded(np.full((40, 120, 3), 90, dtype=np.uint8), "PNG"))  # no face
    return folder


def _by_path(frame) -> dict:
    return {Path(row["path"].removeprefix("file:")).name: row for row in frame.to_dict("records")}


@pytest.fixture(scope="module")
def in_process(logged, photos) -> dict:
    """The served model's answers in this process, for every file of the photos (but the empty one), by name."""
    files = sorted(p for p in photos.rglob("*") if p.is_file() and p.stat().st_size)
    out = mlflow.pyfunc.load_model(logged).predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}))
    return {f.name: row for f, row in zip(files, out.to_dict("records"), strict=True)}


def _same(value, expected) -> bool:
    """Equal, floats to float32's precision, with None, NaN and pandas' missing values all missing."""
    if pd.isna(expected) or pd.isna(value):
        return pd.isna(value) and pd.isna(expected)
    return value == pytest.approx(expected, rel=1e-5) if isinstance(expected, float) else value == expected


def _box(box):
    return None if box is None else [float(v) for v in box]


def _assert_same_answers(got: dict, expected: dict):
    assert sorted(got) == sorted(expected)
    for name, row in expected.items():
        answer = got[name]
        for field in ("age", "gender", "gender_probability", "error"):
            assert _same(answer[field], row[field]), (name, field, answer[field], row[field])
        faces = list(answer["faces"])
        assert len(faces) == len(row["faces"]), name
        for face, want in zip(faces, row["faces"], strict=True):
            for field in ("age", "gender", "gender_probability", "confidence"):
                assert _same(face[field], want[field]), (name, field, face[field], want[field])
            assert _box(face["box"]) == _box(want["box"]), name


@pytest.fixture(scope="module")
def scored(spark, logged, photos):
    from skface.spark import score_images

    return score_images(spark, logged, str(photos))


def test_scoring_a_folder_equals_the_served_model_in_process_row_for_row(scored, in_process):
    assert scored.columns == ["path", *ROW_FIELDS]
    got = _by_path(scored.toPandas())
    _assert_same_answers(got, in_process)
    assert {name for name, row in got.items() if not row["error"]} == {"a.png", "b.jpg", "c.png", "astronaut.jpg"}
    assert "corrupt or truncated" in got["corrupt.png"]["error"] and "not an image" in got["notes.txt"]["error"]
    assert "no face" in got["wide.png"]["error"] and "empty.jpg" not in got
    assert pd.isna(got["wide.png"]["age"])
    astronaut = got["astronaut.jpg"]["faces"][0]
    assert astronaut["box"] is not None and len(astronaut["box"]) == 4 and astronaut["confidence"] > 0.9
    assert got["astronaut.jpg"]["age"] == astronaut["age"]  # a row's answer is its first face's


def test_each_python_worker_loads_the_model_once_and_keeps_it(spark, scored):
    scored.collect()
    scored.collect()  # two jobs of one task a core: each worker has run more than one task of the model

    def cached(batches):
        from mlflow.pyfunc.spark_model_cache import SparkModelCache

        for _ in batches:
            yield pd.DataFrame({"pid": [os.getpid()], "models": [len(SparkModelCache._models)],
                                "hits": [SparkModelCache._cache_hits]})

    workers = spark.range(8, numPartitions=8).mapInPandas(cached, "pid long, models long, hits long").toPandas()
    # A worker loaded the model at its first task and found it in the cache at the next.
    assert ((workers["models"] >= 1) & (workers["hits"] >= 1)).any(), workers


def test_base64_with_spark_line_breaks_scores_like_raw_bytes(spark, logged, photos, scored):
    from pyspark.sql import functions as F

    from skface.spark import score_images

    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(photos))
    encoded = files.select("path", F.base64("content").alias("image"))
    assert "\r\n" in encoded.filter(F.col("path").endswith("astronaut.jpg")).first()["image"]  # 76-char lines
    got = _by_path(score_images(spark, logged, encoded, image_column="image").toPandas())
    _assert_same_answers(got, _by_path(scored.toPandas()))


def test_a_dataframe_keeps_its_other_columns(spark, logged, photos):
    from skface.spark import score_images

    files = spark.read.format("binaryFile").load(str(photos / "a.png"))
    scores = score_images(spark, logged, files, crops=True)
    assert scores.columns == ["path", "modificationTime", "length", *ROW_FIELDS]
    assert scores.first()["length"] == (photos / "a.png").stat().st_size


def test_the_pretrained_model_and_saved_folders_are_written_as_mlflow_models(spark, pipeline, photos, tmp_path,
                                                                             monkeypatch):
    from skface.spark import score_images

    folder = save_pretrained(pipeline, tmp_path / "saved")
    saved = _by_path(score_images(spark, str(folder), str(photos / "more")).toPandas())
    monkeypatch.setattr("skface.network.persistence.default_pretrained_dir", lambda: folder)
    shipped = _by_path(score_images(spark, None, str(photos / "more")).toPandas())
    assert saved["c.png"]["age"] == pytest.approx(shipped["c.png"]["age"]) and not saved["c.png"]["error"]


@pytest.mark.parametrize("kwargs, match", [
    ({"image_column": "pixels"}, r"has no column 'pixels' \(its columns: \['path', 'content'\]\); pass image_column"),
    ({"image_column": "path"}, None),
])
def test_a_bad_image_column_is_a_clear_error(spark, logged, photos, kwargs, match):
    from skface.spark import score_images

    files = spark.read.format("binaryFile").load(str(photos / "a.png")).select("path", "content")
    if match is None:  # a string column is taken for base64: each path is a row with its error
        assert "not valid base64" in score_images(spark, logged, files, **kwargs).first()["error"]
        return
    with pytest.raises(ValueError, match=match):
        score_images(spark, logged, files, **kwargs)


def test_wrong_column_type_clashing_columns_and_missing_files_are_clear_errors(spark, logged, photos):
    from skface.spark import score_images

    files = spark.read.format("binaryFile").load(str(photos / "a.png"))
    with pytest.raises(ValueError, match=r"the column 'length' holds bigint; expected binary .* or string"):
        score_images(spark, logged, files, image_column="length")
    with pytest.raises(ValueError, match=r"already has the answer's columns \['age'\]; rename or drop them"):
        score_images(spark, logged, files.withColumn("age", files["length"]))
    with pytest.raises(ImageSourceError, match=r"no file matches .*nowhere/\*\.jpg; pass a folder, a glob"):
        score_images(spark, logged, str(photos / "nowhere" / "*.jpg"))


def test_score_spark_command_writes_parquet(spark, logged, photos, in_process, tmp_path, capsys):
    from skface.cli import main

    output = tmp_path / "scores.parquet"
    output.mkdir()
    (output / "stale.parquet").write_text("replaced by --overwrite")
    assert main(["score-spark", str(photos), "--model", logged, "--output", str(output), "--overwrite"]) == 0
    assert capsys.readouterr().out.strip() == (f"Scored 7 files into {output}: 4 answered, 3 with an error "
                                               "(their rows say why).")
    assert not (output / "stale.parquet").exists()
    table = pd.read_parquet(output)
    assert list(table.columns) == ["path", *ROW_FIELDS] and len(table) == 7
    _assert_same_answers(_by_path(table), in_process)
    assert main(["score-spark", str(photos / "*.png"), "--model", logged, "--output", str(output)]) == 2
    assert "exists already; pass --overwrite to replace it, or another --output" in capsys.readouterr().err
    assert spark.sparkContext._jsc is not None  # the session it found is left running


def test_score_spark_command_on_a_glob_that_matches_nothing(spark, tmp_path, capsys):
    from skface.cli import main

    assert main(["score-spark", str(tmp_path / "*.jpg"), "--output", str(tmp_path / "out")]) == 2
    assert f"skface score-spark: error: no file matches {tmp_path / '*.jpg'}; pass a folder" in capsys.readouterr().err


def test_grid_search_on_spark_equals_the_default_backend_and_is_tracked(spark, store):
    from sklearn.model_selection import GridSearchCV

    from skface.spark import joblib_backend

    X, y = make_synthetic_faces(40, image_size=16, random_state=1)

    def search():  # four fits: two candidates, two folds, and no refit
        return GridSearchCV(AgeGenderCNN(**{**TINY, "epochs": 1}), {"dropout": [0.1, 0.5]}, cv=2, refit=False)

    here = search().fit(X, y)
    # As the README tracks it: MLflow's autologging, a parent run and a child run per candidate.
    mlflow.set_experiment("spark-search")
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, max_tuning_runs=None, silent=True)
    try:
        with mlflow.start_run() as parent, joblib_backend(n_jobs=2):
            on_spark = search().fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    assert on_spark.best_params_ == here.best_params_
    for key in ("mean_test_score", "split0_test_score", "split1_test_score"):
        np.testing.assert_allclose(on_spark.cv_results_[key], here.cv_results_[key], rtol=1e-5)
    children = MlflowClient().search_runs([parent.info.experiment_id],
                                          filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(child.data.params["dropout"] for child in children) == ["0.1", "0.5"]


def test_sweep_runs_its_trials_on_spark_with_one_child_run_each(spark, store):
    from skface.cli.options import estimator_options, parse_grid
    from skface.tracking.recipes import run_sweep

    params = {name: option.default for name, option in estimator_options("sweep").items()}
    params.update(filters=(4, 8), dense_units=8, epochs=1, batch_size=16, validation_split=0.2, early_stopping=None)
    summary = run_sweep(grid=parse_grid("dense_units=4,8"), params=params, max_trials=2, data="synthetic",
                        n_synthetic=80, image_size=16, test_split=0.25, registered_model="spark-sweep",
                        experiment="spark-sweep", backend="spark", n_jobs=2)
    client = MlflowClient()
    parent = client.get_run(summary["run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                   filter_string=f"tags.mlflow.parentRunId = '{summary['run_id']}'")
    assert len(children) == 2 and all(child.info.status == "FINISHED" for child in children)
    assert all("test_age_mae" in child.data.metrics for child in children)
    best = max(children, key=lambda child: child.data.metrics["selection_key"])
    assert parent.data.params["best_run_id"] == best.info.run_id
    assert parent.data.tags["skface.backend"] == "spark" and summary["version"] == "1"


def test_sweep_script_takes_the_backend():
    kwargs, _ = load_script("sweep").parse_args(["--backend", "spark", "--n-jobs", "3"])
    assert kwargs["backend"] == "spark" and kwargs["n_jobs"] == 3
    kwargs, _ = load_script("sweep").parse_args([])
    assert kwargs["backend"] == "local" and kwargs["n_jobs"] == -1


def test_benchmark_dry_run(spark, pipeline, tmp_path, capsys):
    folder = save_pretrained(pipeline, tmp_path / "saved")
    bench = load_script("bench_spark")
    assert bench.main(["--n", "4", "--data", str(tmp_path / "absent"), "--model", str(folder), "--crops",
                       "--small-batch", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "4 generated faces" in out
    for line in ("in process: images/s", "Spark: model load per Python worker", "Spark: overhead per batch (ms)",
                 "Spark: images/s per task slot, warm", "ratio Spark warm / in process"):
        assert line in out, line
    assert spark.sparkContext._jsc is not None  # the session it found is left running


def test_sweep_rejects_an_unknown_backend():
    from skface.tracking.recipes import run_sweep

    with pytest.raises(ValueError, match="backend must be 'local' or 'spark', got 'dask'"):
        run_sweep(grid={"dropout": [0.1]}, params={}, backend="dask")


def test_without_pyspark_the_error_names_the_extra(monkeypatch):
    from skface.spark import require_spark

    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(SparkUnavailableError,
                       match=r'pyspark is not installed; install it with pip install "skface\[spark\]"'):
        require_spark()


def test_without_java_the_error_names_the_package(monkeypatch, tmp_path):
    pytest.importorskip("pyspark")
    from skface.spark import require_spark

    for name in ("JAVA_HOME", "PYSPARK_GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SparkUnavailableError, match=r"needs a Java runtime, 17 or newer.*no java on PATH.*"
                                                    r"apt-get install openjdk-17-jre-headless"):
        require_spark()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(SparkUnavailableError, match=f"JAVA_HOME={tmp_path} has no bin/java"):
        require_spark()


def test_the_command_says_what_to_install_without_pyspark(monkeypatch, capsys):
    from skface.cli import main

    monkeypatch.setitem(sys.modules, "pyspark", None)
    assert main(["score-spark", "photos/", "--output", "out.parquet"]) == 2
    assert 'skface score-spark: error: pyspark is not installed; install it with pip install "skface[spark]"' in \
        capsys.readouterr().err


def test_skface_spark_imports_without_pyspark():
    code = "import sys; sys.modules['pyspark'] = None; import skface.spark; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ok"

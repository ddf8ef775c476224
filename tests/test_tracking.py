"""MLflow tracking, for real, against a temporary SQLite store."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from skface import UTKFaceError, write_synthetic_utkface
from skface.cli.options import estimator_options, parse_grid
from skface.data.sources import SyntheticDataWarning, resolve_data, train_test_data
from skface.tracking.recipes import run_evaluate, run_sweep, run_train
from skface.tracking.registry import promote
from skface.tracking.runs import tracked_run

from .scripts import load_script

REPO = Path(__file__).resolve().parents[1]
TINY_PARAMS = {name: option.default for name, option in estimator_options().items()}
TINY_PARAMS.update(filters=(4, 8), kernel_size=3, dense_units=8, dropout=0.2, learning_rate=3e-3, epochs=6,
                   batch_size=16, validation_split=0.2, early_stopping=None)
TINY_DATA = {"data": "synthetic", "n_synthetic": 200, "image_size": 16, "color": "grayscale", "test_split": 0.25,
             "seed": 0}


def _kwargs(data=None, **params):
    """run_train's keyword arguments for a tiny network, with some hyperparameters or data options changed."""
    return {**TINY_DATA, **(data or {}), "params": {**TINY_PARAMS, **params}}


@pytest.fixture(scope="module")
def trained(store):
    return run_train(**_kwargs())


def test_run_logs_params_metrics_artifacts_and_tags(trained):
    client = MlflowClient()
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "skface"
    params = run.data.params
    for name in ("filters", "dense_units", "dropout", "learning_rate", "epochs", "batch_size", "random_state",
                 "n_images", "n_skipped", "n_train", "n_validation", "n_test", "image_size", "color"):
        assert name in params, name
    assert params["filters"] == "4,8" and params["n_images"] == "200"
    # What the data is sits in tags, so that the UI's compare view charts hyperparameters, not data names.
    assert not {"data_kind", "data_source", "data_digest"} & set(params)
    assert run.data.tags["skface.data_source"] == "synthetic" and len(run.data.tags["skface.data_digest"]) == 16
    assert run.data.tags["mlflow.runName"] == "seed-synthetic-6ep"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert trained["ui"] == (f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs"
                             "?workflowType=machine_learning")
    for name in ("loss", "val_loss", "age_mae", "val_age_mae", "gender_accuracy", "val_gender_accuracy",
                 "learning_rate"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
        assert steps == [1, 2, 3, 4, 5, 6], name
    metrics = run.data.metrics
    for name in ("test_age_mae", "test_cs5", "test_gender_accuracy", "test_gender_roc_auc", "test_score",
                 "test_age_mae_20-39", "test_gender_accuracy_20-39"):
        assert name in metrics, name
    assert run.data.tags["skface.data_kind"] == "synthetic"
    assert "version.tensorflow" in run.data.tags
    assert run.data.tags["device"] == "CPU" or run.data.tags["device"].startswith("GPU")
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/learning_curves.png", "evaluation/age_predicted_vs_true.png",
            "evaluation/error_by_age_band.png", "evaluation/gender_confusion_matrix.png",
            "evaluation/test_faces.png", "evaluation/test_predictions.csv"} <= artifacts
    assert "model_summary.txt" in {f.path for f in client.list_artifacts(run.info.run_id)}
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name.startswith("synthetic")


def test_predictions_csv_has_one_row_per_test_image(trained):
    path = mlflow.artifacts.download_artifacts(run_id=trained["run_id"], artifact_path="evaluation/test_predictions.csv")
    lines = Path(path).read_text().splitlines()
    assert lines[0].startswith("file,age,gender,predicted_age")
    assert len(lines) - 1 == 50  # 25% of 200
    header = lines[0].split(",")
    assert "p_female" not in header  # one convention: the probability of the predicted gender
    column = header.index("gender_probability")
    assert all(0.5 <= float(line.split(",")[column]) <= 1 for line in lines[1:])


def test_first_run_registers_and_takes_the_champion_alias(trained):
    client = MlflowClient()
    champion = client.get_model_version_by_alias("skface", "champion")
    assert str(champion.version) == trained["version"] == "1"
    assert champion.tags["skface.promotion"].startswith("promoted: first champion")


def test_logged_model_loads_as_pyfunc_and_as_estimator(trained):
    import io

    import pandas as pd
    from PIL import Image

    from skface import make_synthetic_faces
    from skface.tracking.pyfunc import encode_image, load_estimator

    X, _ = make_synthetic_faces(2, image_size=40, color="rgb", random_state=5)
    files = []
    for image in X:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        files.append(buf.getvalue())
    served = mlflow.pyfunc.load_model("models:/skface@champion").predict(
        pd.DataFrame({"image": [encode_image(f) for f in files]})
    )
    pipeline = load_estimator(trained["model_uri"])
    expected = pipeline.predict(files)
    np.testing.assert_allclose(served["age"].to_numpy(dtype=float), expected[:, 0], rtol=1e-5)
    assert list(served["gender"]) == ["female" if g == 1 else "male" for g in expected[:, 1]]


def test_worse_run_does_not_take_the_alias(trained):
    # A learning rate this small leaves the network where it started: clearly worse than
    # the first run (test score about 0.29 against 0.41).
    worse = run_train(**_kwargs(learning_rate=1e-9, epochs=1))
    client = MlflowClient()
    assert worse["version"] == "2" and not worse["promoted"]
    assert str(client.get_model_version_by_alias("skface", "champion").version) == "1"
    tag = client.get_model_version("skface", "2").tags["skface.promotion"]
    assert tag.startswith("not promoted: test score")


def test_champion_rule(store):
    client = MlflowClient()
    name = "rule-check"
    client.create_registered_model(name)
    versions = [client.create_model_version(name, source=str(store)).version for _ in range(5)]
    scored = []

    def champion_scores(score):
        def score_champion(uri):
            scored.append(uri)
            return score
        return score_champion

    def never(uri):
        raise AssertionError(f"the rule must not score {uri} here")

    assert promote(client, name, versions[0], data_kind="synthetic", data_source="synthetic", score=0.9,
                   score_champion=never)[0]
    # Real faces displace a synthetic champion even with a lower score.
    moved, reason = promote(client, name, versions[1], data_kind="utkface", data_source="/data/a", score=0.2,
                            score_champion=never)
    assert moved and "real faces" in reason
    # A synthetic run never displaces a real-face champion.
    moved, reason = promote(client, name, versions[2], data_kind="synthetic", data_source="synthetic", score=0.99,
                            score_champion=never)
    assert not moved and "never displaces a real-face champion" in reason
    # Otherwise the champion is scored on the new version's test faces, whatever it was trained on.
    moved, reason = promote(client, name, versions[3], data_kind="utkface", data_source="/data/b", score=0.3,
                            score_champion=champion_scores(0.35))
    assert not moved and reason == ("not promoted: test score 0.3000 does not beat champion v2's 0.3500 on the "
                                    "same test faces of /data/b")
    moved, reason = promote(client, name, versions[4], data_kind="utkface", data_source="/data/b", score=0.3,
                            score_champion=champion_scores(0.25))
    assert moved and "beats champion v2's 0.2500" in reason
    assert scored == [f"models:/{name}/2", f"models:/{name}/2"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == str(versions[4])


def test_champion_is_scored_on_the_new_versions_test_faces(trained):
    """A run on other data does not compare stored scores: the champion is scored on the run's own test faces."""
    other = run_train(**_kwargs({"seed": 3}, epochs=1, learning_rate=1e-9))  # another split; a useless network
    tag = MlflowClient().get_model_version("skface", other["version"]).tags["skface.promotion"]
    assert not other["promoted"] and tag.startswith("not promoted: test score")
    assert tag.endswith("on the same synthetic test faces")
    champion_score = float(tag.split("'s ")[1].split()[0])
    from skface.evaluation import evaluate
    from skface.tracking.pyfunc import load_estimator

    split = train_test_data("synthetic", test_split=0.25, seed=3, image_size=16, color="grayscale", n_synthetic=200)
    pipeline = load_estimator("models:/skface/1")
    assert champion_score == pytest.approx(
        evaluate(split.y_test, *pipeline[-1].predict_with_proba(split.X_test))["score"], abs=1e-4)


def test_failed_run_is_marked_failed_and_keeps_what_it_logged(store):
    with pytest.raises(UTKFaceError, match="neither 'auto', 'synthetic' nor an existing path"):
        run_train(**_kwargs({"data": str(store / "missing")}))
    run = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("skface").experiment_id], order_by=["start_time DESC"], max_results=1
    )[0]
    assert run.info.status == "FAILED"
    assert "version.tensorflow" in run.data.tags


def test_interrupted_run_is_marked_killed(store):
    with pytest.raises(KeyboardInterrupt):
        with tracked_run() as run:
            mlflow.log_metric("loss", 1.0, step=1)
            raise KeyboardInterrupt
    finished = MlflowClient().get_run(run.info.run_id)
    assert finished.info.status == "KILLED"
    assert finished.data.metrics["loss"] == 1.0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_ends_the_run_killed_even_when_a_second_one_follows(store, monkeypatch, signum):
    # Ctrl-C reaches `mlflow run` too, which then sends SIGTERM to the training while it writes KILLED.
    end_run = mlflow.end_run

    def end_run_while_mlflow_run_sends_sigterm(status):
        os.kill(os.getpid(), signal.SIGTERM)
        end_run(status)

    with pytest.raises(KeyboardInterrupt, match=f"stopped by {signal.Signals(signum).name}"), \
            tracked_run() as run:
        mlflow.log_metric("loss", 1.0, step=1)
        monkeypatch.setattr(mlflow, "end_run", end_run_while_mlflow_run_sends_sigterm)
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the signal interrupts this at once
    monkeypatch.undo()
    assert MlflowClient().get_run(run.info.run_id).info.status == "KILLED"
    # The handlers are back as they were.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_stop_during_training_waits_for_the_next_safe_point(store):
    from skface.tracking.runs import raise_if_stopped, stop_requested, stops_deferred

    reached = []
    with pytest.raises(KeyboardInterrupt, match="stopped by SIGTERM"), tracked_run() as run:
        with stops_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # not interrupted: the stop waits
            reached.append(stop_requested())
            with stops_deferred():  # a nested block leaves the stop to the outer one
                pass
            reached.append("after the nested block")
        reached.append("after the block")  # never: leaving the block raises the stop
    assert reached == [True, "after the nested block"]
    assert MlflowClient().get_run(run.info.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with stops_deferred():  # no run, no stop: nothing happens
        raise_if_stopped()


def test_a_registration_stopped_part_way_is_undone(trained, monkeypatch):
    from skface.tracking import registry

    client = MlflowClient()
    versions = {v.version for v in client.search_model_versions("name = 'skface'")}
    promote = registry.promote

    def stopped_after_the_alias_moved(*args, **kwargs):
        promote(*args, **kwargs)
        raise KeyboardInterrupt("stopped by SIGTERM")

    monkeypatch.setattr(registry, "promote", stopped_after_the_alias_moved)
    info = SimpleNamespace(model_uri=trained["model_uri"], run_id=trained["run_id"])
    with pytest.raises(KeyboardInterrupt):
        registry.register(info, "skface", SimpleNamespace(kind="utkface", source="/data/real"), 0.9,
                          lambda uri: 0.0)
    assert {v.version for v in client.search_model_versions("name = 'skface'")} == versions
    assert str(client.get_model_version_by_alias("skface", "champion").version) == "1"


def test_evaluate_logs_the_same_test_metrics(trained):
    summary = run_evaluate(model_uri="models:/skface@champion", data="synthetic", n_synthetic=200, test_split=0.25,
                           seed=0)
    run = MlflowClient().get_run(summary["run_id"])
    original = MlflowClient().get_run(trained["run_id"]).data.metrics
    # Same data, same split, same model: the same test figures.
    assert run.data.metrics["test_age_mae"] == pytest.approx(original["test_age_mae"], rel=1e-5)
    assert run.data.tags["skface.entry_point"] == "evaluate"


def test_evaluate_the_pretrained_model(trained, monkeypatch, tmp_path):
    from skface import save_pretrained
    from skface.tracking.pyfunc import load_estimator

    save_pretrained(load_estimator(trained["model_uri"]), tmp_path / "shipped")
    monkeypatch.setattr("skface.network.persistence.default_pretrained_dir", lambda: tmp_path / "shipped")
    summary = run_evaluate(model_uri="pretrained", data="synthetic", n_synthetic=200, test_split=0.25, seed=0)
    run = MlflowClient().get_run(summary["run_id"])
    assert run.data.params["model_uri"] == "pretrained" and "test_age_mae" in run.data.metrics


def test_evaluate_uses_the_faces_the_model_was_trained_on(store, tmp_path):
    write_synthetic_utkface(tmp_path / "faces", 40, image_size=32, random_state=0)
    trained_here = run_train(registered_model="real", **_kwargs({"data": str(tmp_path / "faces")}, epochs=1))
    summary = run_evaluate(model_uri=trained_here["model_uri"], test_split=0.25, seed=0)  # data="auto"
    tags = MlflowClient().get_run(summary["run_id"]).data.tags
    assert tags["skface.data_source"] == str((tmp_path / "faces").resolve())
    original = MlflowClient().get_run(trained_here["run_id"]).data.metrics
    assert MlflowClient().get_run(summary["run_id"]).data.metrics["test_age_mae"] == pytest.approx(
        original["test_age_mae"], rel=1e-5)
    # Once those faces are gone, a real-face model is not scored on synthetic faces unless asked.
    (tmp_path / "faces").rename(tmp_path / "moved")
    with pytest.raises(UTKFaceError, match=r"was trained on real faces .* pass data=PATH .* or data=synthetic"):
        run_evaluate(model_uri=trained_here["model_uri"], test_split=0.25, seed=0)
    assert run_evaluate(model_uri=trained_here["model_uri"], data="synthetic", n_synthetic=40, test_split=0.25)


def test_sweep_makes_child_runs_and_registers_the_best(store):
    summary = run_sweep(grid=parse_grid("dense_units=4,8"), max_trials=2, registered_model="sweep",
                        **_kwargs(epochs=1))
    client = MlflowClient()
    children = client.search_runs(
        [mlflow.get_experiment_by_name("skface").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{summary['run_id']}'",
    )
    assert len(children) == 2
    parent = client.get_run(summary["run_id"])
    assert parent.data.params["best_trial"] in ("1", "2")
    assert "test_age_mae" in parent.data.metrics
    assert summary["version"]


def test_run_trains_a_named_configuration_and_logs_what_it_trained(store, monkeypatch):
    from skface.configurations import CONFIGURATIONS

    monkeypatch.setitem(CONFIGURATIONS, "tiny", {"image_size": 16, "color": "rgb", "estimator": {
        "filters": (4,), "dense_units": 8, "bottleneck": 2, "epochs": 2, "age_head": "dex", "flip_tta": True,
        "validation_split": 0.0}})
    kwargs, _ = load_script("train").parse_args(["--config", "tiny", "--data", "synthetic", "--n-synthetic", "120"])
    summary = run_train(**kwargs)
    params = MlflowClient().get_run(summary["run_id"]).data.params
    assert params["config"] == "tiny" and params["image_size"] == "16" and params["color"] == "rgb"
    assert params["filters"] == "4" and params["epochs"] == "2" and params["age_head"] == "dex"
    assert params["n_validation"] == "0" and params["dropout"] == "0.3"  # left out: the options' default
    estimator = mlflow.pyfunc.load_model(summary["model_uri"]).unwrap_python_model().pipeline_[-1]
    assert estimator.input_shape_ == (16, 16, 3) and estimator.flip_tta


def test_run_fine_tunes_a_logged_model_of_the_configuration_it_starts_from(store, monkeypatch, tmp_path, capsys):
    import json

    from skface import load_pretrained
    from skface.cli import main as skface
    from skface.configurations import CONFIGURATIONS

    tiny = {"filters": (4,), "dense_units": 8, "bottleneck": 2, "epochs": 2, "age_head": "dex", "validation_split": 0.0}
    monkeypatch.setitem(CONFIGURATIONS, "tiny", {"image_size": 16, "color": "rgb", "estimator": tiny})
    monkeypatch.setitem(CONFIGURATIONS, "tinytuned", {"image_size": 16, "color": "rgb", "init": "tiny",
                                                      "estimator": {**tiny, "epochs": 1, "learning_rate": 1e-4}})
    data = ["--data", "synthetic", "--n-synthetic", "60"]
    first = run_train(**load_script("train").parse_args(["--config", "tiny", *data])[0])
    # Both stages as tracked runs: the second starts from the model that the first logged.
    uri = f"runs:/{first['run_id']}/model"
    kwargs, _ = load_script("train").parse_args(["--config", "tinytuned", "--init-model", uri, *data])
    summary = run_train(**kwargs)
    run = MlflowClient().get_run(summary["run_id"])
    assert run.data.params["init_model"] == uri and run.data.params["epochs"] == "1"
    assert run.data.params["config"] == "tinytuned" and run.info.run_name.endswith("-finetuned")
    lineage = json.loads(run.data.tags["skface.init_model"])
    assert lineage["run_id"] == first["run_id"] and lineage["configuration"] == "tiny"
    assert lineage["data"] == "synthetic" and lineage["seed"] == 0 and lineage["n_train"] > 0
    base = mlflow.pyfunc.load_model(uri).unwrap_python_model().pipeline_[-1]
    tuned = mlflow.pyfunc.load_model(summary["model_uri"]).unwrap_python_model().pipeline_[-1]
    assert tuned.n_epochs_ == 1 and tuned.learning_rate == 1e-4
    changed = [not np.array_equal(a, b) for a, b in zip(base.model_.get_weights(), tuned.model_.get_weights())]
    assert any(changed) and len(changed) == len(base.model_.get_weights())
    # skface train takes the logged model too; what it saves is of another configuration, and is refused.
    tuned_folder = str(tmp_path / "tuned")
    assert skface(["train", "--config", "tinytuned", "--init-model", uri, *data, "--save", tuned_folder]) == 0
    assert load_pretrained(tmp_path / "tuned")[-1].epochs == 1
    with pytest.raises(SystemExit):
        load_script("train").parse_args(["--config", "tinytuned", "--init-model", str(tmp_path / "tuned"), *data])
    assert "--config tinytuned fine-tunes a model of configuration tiny, but" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["train", "sweep"])
def test_every_configuration_sets_its_options(script, capsys):
    from skface.configurations import CONFIGURATIONS

    for name, config in CONFIGURATIONS.items():
        if config.get("init"):  # a fine-tuning needs the model it starts from (--init-model), which a sweep never takes
            with pytest.raises(SystemExit):
                load_script(script).parse_args(["--config", name])
            assert f"--config {name} fine-tunes a model of configuration {config['init']}" in capsys.readouterr().err
            continue
        kwargs, _ = load_script(script).parse_args(["--config", name])
        assert (kwargs["image_size"], kwargs["color"]) == (config["image_size"], config["color"]), name
        assert kwargs["config"] == name
        assert {key: kwargs["params"][key] for key in config["estimator"]} == config["estimator"], name


def test_a_configuration_with_its_options_given_too_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        load_script("train").parse_args(["--config", "narrow80fast", "--epochs", "5", "--color", "rgb"])
    error = capsys.readouterr().err
    assert "--config narrow80fast sets the image size, colour and every hyperparameter" in error
    assert "leave out --color, --epochs, or leave out --config" in error
    with pytest.raises(SystemExit):
        load_script("train").parse_args(["--config", "fastest"])
    assert "invalid choice: 'fastest'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, match",
    [("dropout", "must read name=value1,value2"), ("colour=1,2", "unknown hyperparameter 'colour'"),
     ("epochs=a,b", "grid values of 'epochs' are not valid"),
     ("zoom_tta=1.1/x", r"grid values of 'zoom_tta' are not valid \(expected comma-separated numbers"),
     ("age_head=dex,ordinal", "expected one of dex, regression"), ("", "the grid is empty")],
)
def test_bad_grid(text, match):
    with pytest.raises(ValueError, match=match):
        parse_grid(text)


def test_grid_parses_filters():
    assert parse_grid("filters=8/16,16/32;dropout=0.1") == {"filters": [(8, 16), (16, 32)], "dropout": [0.1]}
    assert parse_grid("zoom_tta=1.1/0.9,none") == {"zoom_tta": [(1.1, 0.9), ()]}
    assert set(estimator_options()) >= {"filters", "dropout", "epochs"}


def test_auto_data_falls_back_to_synthetic_loudly(tmp_path):
    with pytest.warns(SyntheticDataWarning, match="SYNTHETIC"):
        data = resolve_data("auto", image_size=8, n_synthetic=10, data_dir=tmp_path / "data")
    assert data.kind == "synthetic" and len(data.images) == 10


def test_auto_data_finds_utkface_under_data(tmp_path):
    write_synthetic_utkface(tmp_path / "data" / "UTKFace", 12, image_size=32, random_state=0)
    data = resolve_data("auto", image_size=8, data_dir=tmp_path / "data", verbose=False)
    assert data.kind == "utkface" and len(data.images) == 12
    assert data.source == str((tmp_path / "data" / "UTKFace").resolve())


def test_bad_data_value():
    with pytest.raises(ValueError, match="data must be 'auto', 'synthetic' or a path"):
        resolve_data("")


def _mlflow_run(tmp_path, *, epochs: int, filters: str) -> tuple[list[str], dict]:
    """`mlflow run . --env-manager local` of a tiny network on synthetic faces, as a user types it, and its
    environment: a SQLite store in ``tmp_path``, the virtualenv's bin on PATH."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local",
               "--experiment-name", "skface", "-P", f"epochs={epochs}", "-P", "data=synthetic",
               "-P", "n_synthetic=100", "-P", "image_size=16", "-P", f"filters={filters}", "-P", "dense_units=8"]
    return command, env


@pytest.mark.slow
def test_mlflow_run_entry_point(tmp_path):
    """`mlflow run . --env-manager local` as a user types it, with the virtualenv's bin on PATH."""
    command, env = _mlflow_run(tmp_path, epochs=2, filters="4,8")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        client = MlflowClient()
        run = client.search_runs([mlflow.get_experiment_by_name("skface").experiment_id])[0]
        assert run.info.status == "FINISHED"
        assert run.data.params["epochs"] == "2" and "test_age_mae" in run.data.metrics
        assert str(client.get_model_version_by_alias("skface", "champion").version) == "1"
    finally:
        mlflow.set_tracking_uri(None)


def _gone(process) -> bool:
    """Whether a process has ended (an orphan's zombie counts: nothing may reap it here)."""
    import psutil

    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _command_line(process) -> str:
    """A process's id and command line, for a failure message (it may end while it is read)."""
    import psutil

    try:
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.Error:
        return f"{process.pid} (ended)"


@pytest.mark.slow
def test_killing_mlflow_run_stops_the_training_and_registers_nothing(tmp_path):
    """`kill <pid of mlflow run>` during training: the training ends too, the run is KILLED, nothing registers."""
    import psutil

    command, env = _mlflow_run(tmp_path, epochs=5000, filters="4")
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    parent = None
    try:
        client = MlflowClient()
        client.search_experiments()  # creates the store here, so that two processes do not create it at once
        with open(tmp_path / "run.log", "w") as log:
            parent = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 300
        run = None
        while run is None or not client.get_metric_history(run.info.run_id, "loss"):  # training has begun
            assert parent.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(1)
            experiment = client.get_experiment_by_name("skface")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            run = runs[0] if runs else None
        training = psutil.Process(parent.pid).children(recursive=True)
        assert training, "mlflow run has no training process"
        parent.terminate()  # kill <pid of mlflow run>
        parent.wait(timeout=30)
        deadline = time.monotonic() + 120  # it takes 2-3 s on a 2-core machine; 5000 epochs take minutes
        while not all(_gone(process) for process in training) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [_command_line(process) for process in training if not _gone(process)]
        assert not left, f"the training goes on without mlflow run: {left}\n" + (tmp_path / "run.log").read_text()[-3000:]
        assert client.get_run(run.info.run_id).info.status == "KILLED"
        assert client.search_model_versions("name = 'skface'") == []
    finally:
        mlflow.set_tracking_uri(None)
        if parent is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(parent.pid, signal.SIGKILL)


def test_a_stop_whose_interruption_was_lost_still_ends_the_training():
    # A KeyboardInterrupt raised inside a finalizer is swallowed by Python; the flag that the stop sets is not.
    from skface.tracking import runs
    from skface.tracking.callbacks import MlflowMetricsCallback

    callback = MlflowMetricsCallback()
    callback.on_train_batch_end(0)  # no stop: nothing happens
    runs._STOP_REQUESTED.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            callback.on_train_batch_end(1)
    finally:
        runs._STOP_REQUESTED.clear()


def test_a_dataset_another_trial_inserted_at_the_same_moment_is_still_linked(store, monkeypatch):
    from mlflow.exceptions import MlflowException

    from skface.data.sources import resolve_data
    from skface.tracking import runs

    real, calls = mlflow.log_input, []

    def racing(*args, **kwargs):  # the first insert loses the race on the store's unique key
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest")
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", racing)
    data = resolve_data("synthetic", n_synthetic=10, image_size=8, verbose=False)
    with mlflow.start_run() as run:
        runs.log_data(data, n_train=8, n_test=2, n_val=0)
    assert len(calls) == 2 and len(MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs) == 1


def test_a_run_whose_status_meets_a_locked_store_is_still_ended(store, monkeypatch):
    from mlflow.exceptions import MlflowException

    from skface.tracking import runs

    real, calls = MlflowClient.set_terminated, []

    def locked_once(self, run_id, status=None, end_time=None):  # another writer holds SQLite's lock at first
        calls.append(status)
        if len(calls) == 1:
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return real(self, run_id, status, end_time)

    monkeypatch.setattr(MlflowClient, "set_terminated", locked_once)
    monkeypatch.setattr(runs, "END_RUN_WAITS", (0.01, 0.01))
    with pytest.raises(KeyboardInterrupt):
        with runs.tracked_run() as run:
            raise KeyboardInterrupt
    assert calls == ["KILLED", "KILLED"] and mlflow.active_run() is None
    assert MlflowClient().get_run(run.info.run_id).info.status == "KILLED"
    other = MlflowException("RESOURCE_DOES_NOT_EXIST")
    monkeypatch.setattr(MlflowClient, "set_terminated", lambda *args, **kwargs: (_ for _ in ()).throw(other))
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):  # any other error is not hidden
        with runs.tracked_run():
            pass
    mlflow.end_run()  # the run that the failed end left nowhere

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from skface import load_pretrained
from skface.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "model"
    code = main(
        ["train", "--data", "synthetic", "--n-synthetic", "80", "--image-size", "16", "--epochs", "1",
         "--batch-size", "16", "--save", str(folder)]
    )
    assert code == 0
    return folder


def test_train_prints_held_out_figures_and_saves(trained, capsys):
    model = load_pretrained(trained)
    assert model.named_steps["model"].input_shape_ == (16, 16, 1)
    assert model.predict(np.zeros((1, 30, 30, 3), dtype=np.uint8)).shape == (1, 2)


def test_train_output(tmp_path, capsys):
    assert main(["train", "--data", "synthetic", "--n-synthetic", "40", "--image-size", "16", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "knows nothing about real faces" in out
    assert "age MAE (years)" in out and "gender accuracy" in out and "baseline" in out


def test_train_on_a_utkface_folder(tmp_path, capsys):
    from skface import write_synthetic_utkface

    write_synthetic_utkface(tmp_path / "faces", 40, image_size=32, random_state=0)
    assert main(["train", "--data", str(tmp_path / "faces"), "--image-size", "16", "--epochs", "1"]) == 0
    assert "Data: 40 faces from" in capsys.readouterr().out


def test_train_with_extra_data_and_calibration_gives_age_ranges(tmp_path, capsys):
    from skface import write_synthetic_utkface

    write_synthetic_utkface(tmp_path / "faces", 40, image_size=32, random_state=0)
    write_synthetic_utkface(tmp_path / "more", 30, image_size=32, random_state=1)
    assert main(["train", "--data", str(tmp_path / "faces"), "--extra-data", str(tmp_path / "more"),
                 "--calibration-split", "0.25", "--balance-age-bands", "--aligned-views", "--image-size", "16",
                 "--epochs", "1",
                 "--age-head", "dex", "--save", str(tmp_path / "model")]) == 0
    out = capsys.readouterr().out
    assert "Data: 70 faces from" in out and re.search(r"calibrated on 1[5-6] others", out)
    assert re.search(r"on \d+ faces, each also as the face step aligns it", out)
    assert "80% range coverage" in out and "gender ECE" in out
    Image.new("RGB", (40, 40)).save(tmp_path / "a.jpg")
    assert main(["predict", str(tmp_path / "a.jpg"), "--model", str(tmp_path / "model")]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert re.search(r"\b\d+ \(\d+-\d+\)\s", line), line
    metadata = load_pretrained(tmp_path / "model")[-1]
    assert metadata.is_conformalized()


def test_a_configuration_sets_the_calibration_and_refuses_a_second_word(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--config", "v2", "--calibration-split", "0.2", "--data", "synthetic"])
    assert "--calibration-split would be ignored" in capsys.readouterr().err


def test_a_child_calibration_split_calibrates_on_more_faces(tmp_path, capsys):
    from skface import write_synthetic_utkface

    write_synthetic_utkface(tmp_path / "faces", 40, image_size=32, random_state=0)
    counts = []
    for flags in ([], ["--child-calibration-split", "0.5"]):
        assert main(["train", "--data", str(tmp_path / "faces"), "--calibration-split", "0.25", *flags,
                     "--image-size", "16", "--epochs", "1"]) == 0
        counts.append(re.search(r"on (\d+) faces, in [\d.]+ s; calibrated on (\d+) others", capsys.readouterr().out))
    (trained, calibrated), (trained_child, calibrated_child) = [(int(c[1]), int(c[2])) for c in counts]
    assert calibrated_child > calibrated and trained_child + calibrated_child == trained + calibrated


@pytest.mark.parametrize("flags", [["--child-calibration-split", "0.2"],
                                   ["--calibration-split", "0.3", "--child-calibration-split", "0.2"]])
def test_a_child_calibration_split_needs_a_smaller_calibration_split(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "synthetic", *flags])
    assert exit_info.value.code == 2
    assert "give a --calibration-split above 0 and at most --child-calibration-split" in capsys.readouterr().err


def test_train_on_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--epochs", "1"]) == 2
    assert "skface train: error:" in capsys.readouterr().err


def test_predict_flags_unreadable_files_and_answers_the_rest(trained, tmp_path, capsys):
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.new("RGB", (40, 40), (200, 150, 120)).save(folder / "a.jpg")
    Image.new("L", (30, 50), 90).save(folder / "b.png")
    (folder / "notes.txt").write_text("not a face")
    code = main(["predict", str(folder), "--model", str(trained), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [r["file"].rsplit("/", 1)[1] for r in rows] == ["a.jpg", "b.png", "notes.txt"]
    assert rows[0]["gender"] in ("male", "female") and rows[0]["age"] >= 0 and not rows[0]["error"]
    assert rows[2]["age"] is None and "not an image" in rows[2]["error"]


def test_predict_table(trained, tmp_path, capsys):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.jpg")
    assert main(["predict", str(tmp_path / "a.jpg"), "--model", str(trained)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["file", "face", "box", "(x,", "y,", "w,", "h)", "conf", "age", "(80%",
                                         "range)", "gender", "P(gender)"]
    # A plain 40x40 square has no face but the shape of a crop: answered whole.
    assert out.splitlines()[1].split()[1:5] == ["0", "0,", "0,", "40,"]


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "skface.cli", "train", "--help"], capture_output=True, text=True, check=True
    )
    assert "--epochs" in result.stdout and "--data" in result.stdout


def test_predict_in_small_batches_matches_one_batch(trained, tmp_path, capsys):
    for i, value in enumerate((30, 120, 220)):
        Image.new("RGB", (40, 40), (value, value, 90)).save(tmp_path / f"{i}.png")
    main(["predict", str(tmp_path), "--model", str(trained), "--json"])
    whole = capsys.readouterr().out
    main(["predict", str(tmp_path), "--model", str(trained), "--json", "--batch-size", "1"])
    assert capsys.readouterr().out == whole


def test_predict_with_an_unknown_model_spec(tmp_path, capsys):
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--model", "no-such-model"]) == 2
    assert ("skface predict: error: --model: 'no-such-model' is neither a saved model folder (skface train --save) nor "
            "an MLflow model URI") in capsys.readouterr().err


def test_predict_from_an_mlflow_model_uri(trained, tmp_path, capsys, monkeypatch):
    import mlflow

    from skface.tracking.pyfunc import log_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("cli-test")
    try:
        with mlflow.start_run():
            info = log_model(load_pretrained(trained))
        Image.new("RGB", (40, 40), (90, 60, 50)).save(tmp_path / "face.jpg")
        assert main(["predict", str(tmp_path / "face.jpg"), "--model", info.model_uri, "--json"]) == 0
        from_uri = json.loads(capsys.readouterr().out)
        main(["predict", str(tmp_path / "face.jpg"), "--model", str(trained), "--json"])
        assert json.loads(capsys.readouterr().out)["age"] == from_uri["age"]
    finally:
        mlflow.set_tracking_uri(None)
        monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # exported by set_experiment


def test_train_with_a_named_configuration(tmp_path, capsys, monkeypatch):
    from skface.configurations import CONFIGURATIONS

    monkeypatch.setitem(CONFIGURATIONS, "tiny", {"image_size": 16, "color": "rgb", "estimator": {
        "filters": (4,), "dense_units": 8, "bottleneck": 2, "epochs": 1, "age_head": "dex", "flip_tta": True,
        "validation_split": 0.0}})
    assert main(["train", "--data", "synthetic", "--config", "tiny", "--n-synthetic", "60",
                 "--save", str(tmp_path / "m")]) == 0
    assert "Configuration 'tiny'" in capsys.readouterr().out
    model = load_pretrained(tmp_path / "m")
    estimator = model.named_steps["model"]
    assert estimator.age_head == "dex" and model.named_steps["preprocess"].color == "rgb"
    assert estimator.validation_split == 0.0 and "val_loss" not in estimator.history_  # the configuration's
    assert estimator.model_.get_layer("bottleneck").filters == 2
    # The one rule for --config everywhere: an option that it would override is an error.
    with pytest.raises(SystemExit):
        main(["train", "--data", "synthetic", "--config", "tiny", "--validation-split", "0.2"])
    assert "leave out --validation-split, or leave out --config" in capsys.readouterr().err
    metadata = json.loads((tmp_path / "m" / "skface.json").read_text())["metadata"]
    assert metadata["configuration"] == "tiny" and "age_mae_20-39" in metadata["test_metrics"]


def test_unknown_configuration_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data", "synthetic", "--config", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_predict_reports_a_missing_path_and_answers_the_others(trained, tmp_path, capsys):
    Image.new("RGB", (40, 40), (200, 150, 120)).save(tmp_path / "a.jpg")
    code = main(["predict", str(tmp_path / "missing.jpg"), str(tmp_path / "a.jpg"), "--model", str(trained),
                 "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert rows[0]["age"] is None and "missing.jpg" in rows[0]["file"] and rows[0]["error"]
    assert rows[1]["age"] is not None and not rows[1]["error"]


def test_predict_on_an_empty_folder_is_an_error(trained, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--model", str(trained)]) == 1
    err = capsys.readouterr().err
    assert f"the folder {tmp_path / 'empty'} holds no files" in err


def test_predict_with_a_model_uri_that_does_not_resolve(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    assert main(["predict", "a.png", "--model", "models:/skface@champion"]) == 2
    err = capsys.readouterr().err
    assert f"cannot load models:/skface@champion: the tracking store sqlite:///{tmp_path / 'mlflow.db'}" in err
    assert "MLFLOW_TRACKING_URI is not set" in err and "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()  # no empty store left behind


def test_predict_with_a_registered_model_that_does_not_exist(tmp_path, capsys, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.MlflowClient().search_experiments()  # creates the store
        Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
        assert main(["predict", str(tmp_path / "a.png"), "--model", "models:/nobody@champion"]) == 2
        err = capsys.readouterr().err
        assert "cannot load models:/nobody@champion from the tracking store" in err and "nobody" in err
    finally:
        mlflow.set_tracking_uri(None)


def test_train_fine_tunes_a_saved_model_and_records_where_it_started(trained, tmp_path, capsys):
    from skface.network.persistence import read_metadata

    base = load_pretrained(trained)[-1]
    # Only what changes is given: the image size, batch size and network are the saved model's.
    assert main(["train", "--data", "synthetic", "--n-synthetic", "80", "--epochs", "30", "--learning-rate", "1e-4",
                 "--init-model", str(trained), "--save", str(tmp_path / "tuned")]) == 0
    out = capsys.readouterr().out
    assert f"Fine-tuning {trained}: 16 px grayscale" in out and f"Fine-tuned {trained}: 30 epochs on 64 faces" in out
    tuned = load_pretrained(tmp_path / "tuned")[-1]
    assert base.epochs == 1 and base.learning_rate == 1e-3
    assert (tuned.epochs, tuned.learning_rate, tuned.batch_size, tuned.warm_start) == (30, 1e-4, 16, False)
    changed = [not np.array_equal(a, b) for a, b in zip(base.model_.get_weights(), tuned.model_.get_weights())]
    assert any(changed) and len(changed) == len(base.model_.get_weights())
    lineage = read_metadata(tmp_path / "tuned")["init_model"]
    assert lineage["path"] == str(trained) and lineage["data"] == "synthetic" and lineage["n_train"] == 64


def test_a_fine_tuning_calibrates_on_faces_that_the_extra_sources_held_out(tmp_path, capsys):
    from skface import write_synthetic_utkface
    from skface.network.persistence import read_metadata

    write_synthetic_utkface(tmp_path / "faces", 40, image_size=32, random_state=0)
    write_synthetic_utkface(tmp_path / "more", 30, image_size=32, random_state=1)
    sources = ["--data", str(tmp_path / "faces"), "--extra-data", str(tmp_path / "more"), "--calibration-split", "0.25"]
    assert main(["train", *sources, "--image-size", "16", "--epochs", "1", "--age-head", "dex",
                 "--save", str(tmp_path / "all")]) == 0
    capsys.readouterr()
    assert main(["train", *sources, "--train-on-extra", "false", "--init-model", str(tmp_path / "all"),
                 "--epochs", "1", "--save", str(tmp_path / "tuned")]) == 0
    out = capsys.readouterr().out
    assert "the extra sources only calibrate" in out
    trained = re.search(r"Fine-tuned \S+ 1 epochs on (\d+) faces, in [\d.]+ s; calibrated on (\d+) others", out)
    assert trained and int(trained[1]) < 40 and int(trained[2]) > 0.25 * 40, out
    metadata = read_metadata(tmp_path / "tuned")
    assert metadata["train_on_extra"] is False and metadata["init_model"]["train_on_extra"] is True
    assert metadata["n_calibration"] == int(trained[2]) and metadata["extra_data"]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path / "faces"), "--extra-data", str(tmp_path / "more"),
              "--train-on-extra", "false", "--image-size", "16", "--epochs", "1"])
    assert exit_info.value.code == 2 and "give --calibration-split" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--filters", "8,16"], "warm_start=True goes on training the fitted network, but the parameters that shape it"),
    (["--image-size", "24"], "reads 16 px grayscale images, not 24 px grayscale; train with its image size"),
])
def test_fine_tuning_another_network_is_refused_before_the_data_is_read(trained, flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "synthetic", "--init-model", str(trained), *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_fine_tuning_a_missing_model_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "synthetic", "--init-model", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert f"--init-model: '{tmp_path / 'nope'}' is neither a saved model folder" in capsys.readouterr().err


def test_train_says_which_files_it_skipped_in_one_plain_line(tmp_path, capsys):
    from skface import write_synthetic_utkface

    write_synthetic_utkface(tmp_path / "faces", 40, image_size=32, random_state=0)
    (tmp_path / "faces" / "notes.txt").write_text("not a face")
    assert main(["train", "--data", str(tmp_path / "faces"), "--image-size", "16", "--epochs", "1"]) == 0
    captured = capsys.readouterr()
    assert "Data: 40 faces from" in captured.out and "(1 files skipped)" in captured.out
    assert "Warning: Skipped 1 of 41 files" in captured.err and "load_utkface(" not in captured.err


def test_a_fine_tuning_configuration_needs_a_model_of_the_configuration_it_starts_from(tmp_path, capsys):
    from skface import AgeGenderCNN, make_synthetic_faces, save_pretrained
    from skface.network.pipeline import make_pipeline

    with pytest.raises(SystemExit):
        main(["train", "--config", "narrow80tuned", "--data", "synthetic"])
    assert ("--config narrow80tuned fine-tunes a model of configuration narrow80all: train that first"
            in capsys.readouterr().err)
    X, y = make_synthetic_faces(20, image_size=16, random_state=0)
    other = AgeGenderCNN(filters=(4,), dense_units=4, epochs=1, verbose=0).fit(X, y)
    save_pretrained(make_pipeline(other, image_size=16, color="grayscale"), tmp_path / "seed",
                    metadata={"configuration": "seed"})
    with pytest.raises(SystemExit):
        main(["train", "--config", "narrow80tuned", "--data", "synthetic", "--init-model", str(tmp_path / "seed")])
    assert f"but {tmp_path / 'seed'} was trained with seed; give one trained with --config narrow80all" in (
        capsys.readouterr().err)

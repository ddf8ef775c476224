import os

# Hide TensorFlow's C++ notices in test logs; an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from skface import AgeGenderCNN  # noqa: E402

TINY = {"filters": (4, 8), "dense_units": 8, "epochs": 2, "batch_size": 16, "verbose": 0, "random_state": 0}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test away from the user's real cache folder."""
    monkeypatch.setenv("SKFACE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_data():
    """60 random 16x16 grayscale images with [age, gender] targets."""
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (60, 16, 16, 1)).astype(np.uint8)
    y = np.column_stack([rng.randint(1, 90, 60), rng.randint(0, 2, 60)]).astype(float)
    return X, y


@pytest.fixture(scope="module")
def fitted(tiny_data):
    """One tiny fitted estimator shared by a test module."""
    X, y = tiny_data
    return AgeGenderCNN(**TINY).fit(X, y)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh MLflow tracking store for the module, and a working folder without ./data."""
    import mlflow

    folder = tmp_path_factory.mktemp("mlflow")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    # MLflow's set_experiment exports MLFLOW_EXPERIMENT_ID; one from another test's store must not leak in.
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        mp.delenv(name, raising=False)
    mp.delenv("MLFLOW_RUN_ID", raising=False)
    mp.chdir(folder)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    # The process's active experiment may be another store's: start from this store's default one.
    mlflow.set_experiment(experiment_id="0")
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    yield folder
    mlflow.set_tracking_uri(None)
    mp.undo()
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)

"""An MLflow run's life: the experiment it goes to, how it ends, and what it logs about its environment and data."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import threading
import time
import warnings
from importlib import metadata

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .. import __version__
from ..quiet import import_tensorflow_quietly

DEFAULT_EXPERIMENT = "skface"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


# Ctrl-C and SIGTERM stop a tracked run. How often, in seconds, a run started by `mlflow run` checks that
# `mlflow run` is still there.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Set by a stop: a KeyboardInterrupt raised where Python swallows it (a finalizer run inside TensorFlow, say) would
# otherwise be lost with the handlers already ignoring more stops; the training checks this flag after each batch.
_STOP_REQUESTED = threading.Event()
# Set inside stops_deferred(): there a stop only sets the flag, and the code checks it at safe points, instead of a
# KeyboardInterrupt raised at whatever bytecode runs (inside a store's commit, a lock held, say).
_STOPS_DEFERRED = threading.Event()
_STOP_SIGNAL: list[str] = []  # the name of the signal that stopped the run
PARENT_CHECK_SECONDS = 1.0


@contextlib.contextmanager
def tracked_run(**kwargs):
    """``mlflow.start_run`` that ends KILLED on Ctrl-C or SIGTERM and FAILED on any error.

    MLflow's own context manager marks an interrupted run FAILED; here an
    interruption is told apart, and what was logged before stays. The first
    Ctrl-C or SIGTERM stops the run; those that follow while its status is
    written are ignored (``mlflow run``, stopped with Ctrl-C, sends its own
    SIGTERM right after). A run started by ``mlflow run`` (``MLFLOW_RUN_ID``
    set) also stops, KILLED, within a second of ``mlflow run`` being killed,
    instead of training on as an orphan and registering a model.
    """
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
            if signal.getsignal(signum) in (default, None):  # the user's own handlers stay
                installed[signum] = signal.signal(signum, _stop)
    stopped = threading.Event()
    _STOP_REQUESTED.clear()
    _STOP_SIGNAL.clear()
    try:
        if installed and os.environ.get("MLFLOW_RUN_ID") and not kwargs.get("nested", False):
            threading.Thread(target=_stop_when_orphaned, args=(os.getppid(), stopped), daemon=True,
                             name="skface-parent-check").start()
        # System metrics (CPU, memory, disk; GPU where pynvml is present) for top-level runs.
        kwargs.setdefault("log_system_metrics", not kwargs.get("nested", False))
        run = mlflow.start_run(**kwargs)
        try:
            _mark_experiment_kind(run.info.experiment_id)
            yield run
        except KeyboardInterrupt:
            with stops_ignored():
                _end_run(run.info.run_id, "KILLED")
            raise
        except BaseException:
            with stops_ignored():
                _end_run(run.info.run_id, "FAILED")
            raise
        else:
            _end_run(run.info.run_id, "FINISHED")
    finally:
        stopped.set()
        for signum, previous in installed.items():
            signal.signal(signum, previous)
        if installed:  # the stop belonged to this run
            _STOP_REQUESTED.clear()


# Seconds between the tries to write a run's status while a SQLite store stays locked by another writer.
END_RUN_WAITS = (1, 2, 4, 8)


def _end_run(run_id: str, status: str) -> None:
    """``mlflow.end_run(status)``, whose status is written again while a SQLite store is locked.

    Seen in CI: a stopped run stayed RUNNING because ``end_run`` found the
    store locked past SQLite's timeout. ``end_run`` takes the run off the
    stack before writing, and stops the system-metrics thread (another
    writer) only after; so that thread is stopped here, and the status
    written again, over 15 s, before the error is raised.
    """
    try:
        mlflow.end_run(status)
        return
    except MlflowException as exc:
        if "database is locked" not in str(exc):
            raise
        error = exc
    from mlflow.tracking import fluent

    monitor = getattr(fluent, "run_id_to_system_metrics_monitor", {}).pop(run_id, None)
    if monitor is not None:
        monitor.finish()
    for wait in END_RUN_WAITS:
        time.sleep(wait)
        try:
            MlflowClient().set_terminated(run_id, status)
            return
        except MlflowException as exc:
            if "database is locked" not in str(exc):
                raise
            error = exc
    raise error


@contextlib.contextmanager
def stops_ignored():
    """Ignore Ctrl-C and SIGTERM while a run's stop is written down (its status, an undone registration).

    Only where :func:`tracked_run` stops on them; elsewhere, and outside
    the main thread, this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = [signum for signum in _STOP_SIGNALS if signal.getsignal(signum) in (_stop, signal.SIG_IGN)]
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in ours}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop_requested() -> bool:
    """Whether a Ctrl-C or SIGTERM has stopped the :func:`tracked_run` in progress."""
    return _STOP_REQUESTED.is_set()


def raise_if_stopped() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C or SIGTERM has stopped the :func:`tracked_run` in progress.

    The safe point of :func:`stops_deferred`: the training calls it after each batch.
    """
    if _STOP_REQUESTED.is_set():
        raise KeyboardInterrupt(f"stopped by {_STOP_SIGNAL[0]}" if _STOP_SIGNAL else "stopped")


@contextlib.contextmanager
def stops_deferred():
    """Let Ctrl-C and SIGTERM stop the body only at its safe points.

    Inside, a stop of the :func:`tracked_run` in progress only sets
    :func:`stop_requested`; the body calls :func:`raise_if_stopped` where
    stopping is safe (the training after each batch), and leaving the block
    raises if the body did not. Outside, a stop raises ``KeyboardInterrupt``
    at once. Training logs to the store after every epoch, and an
    interruption raised at whatever line runs can land inside a commit or
    with a lock held, which other threads then wait on (CI once saw a
    training still running a minute after ``mlflow run`` was killed).
    Outside the main thread, and inside another such block, this does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread() or _STOPS_DEFERRED.is_set():
        yield
        return
    _STOPS_DEFERRED.set()
    try:
        yield
    finally:
        _STOPS_DEFERRED.clear()
    raise_if_stopped()


def _stop(signum, frame):
    # The first stop raises, or, inside stops_deferred(), leaves it to the next safe point; later ones are ignored
    # until tracked_run restores the handlers.
    _STOP_SIGNAL[:] = [signal.Signals(signum).name]
    _STOP_REQUESTED.set()
    for other in _STOP_SIGNALS:
        if signal.getsignal(other) is _stop:
            signal.signal(other, signal.SIG_IGN)
    if not _STOPS_DEFERRED.is_set():
        raise_if_stopped()


def _stop_when_orphaned(parent: int, stopped: threading.Event) -> None:
    # When `mlflow run` dies, this process is handed to another parent: stop as on SIGTERM.
    while not stopped.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def name_run(name: str) -> None:
    """Give the active run a name that says what ran (MLflow otherwise picks a random one)."""
    mlflow.set_tag("mlflow.runName", name)


def ui_link(run) -> str:
    """A link that opens ``run``'s experiment in the MLflow UI on its table of training runs.

    MLflow 3's UI opens an experiment on its GenAI view unless told
    otherwise; ``workflowType=machine_learning`` asks for the runs table. The
    host is the tracking server's, or ``mlflow ui``'s default for a local
    store.
    """
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{run.info.experiment_id}/runs?workflowType=machine_learning"


def _mark_experiment_kind(experiment_id: str) -> None:
    """Tag the experiment as model training, for MLflow versions whose UI reads the tag."""
    client = MlflowClient()
    if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def set_experiment(name: str | None = None) -> None:
    """Use experiment ``name``, else the one MLflow's environment names, else ``skface``.

    Under ``mlflow run`` the run already exists in the experiment that
    ``mlflow run`` chose, so nothing is changed.
    """
    if os.environ.get("MLFLOW_RUN_ID"):
        return
    if name:
        mlflow.set_experiment(name)
    elif os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    elif os.environ.get("MLFLOW_EXPERIMENT_ID"):
        mlflow.set_experiment(experiment_id=os.environ["MLFLOW_EXPERIMENT_ID"])
    else:
        mlflow.set_experiment(DEFAULT_EXPERIMENT)


def environment_tags() -> dict[str, str]:
    """Package versions, CPU/GPU and git commit, as run tags."""
    import_tensorflow_quietly()
    import tensorflow as tf

    tags = {"skface.version": __version__, "python": platform.python_version()}
    for name in ("tensorflow", "keras", "scikit-learn", "numpy", "mlflow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            tags[f"version.{name}"] = metadata.version(name)
    gpus = tf.config.list_physical_devices("GPU")
    tags["device"] = f"GPU x{len(gpus)}" if gpus else "CPU"
    tags["cpu"] = platform.processor() or platform.machine()
    tags["cpu_count"] = str(os.cpu_count())
    commit = _git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def log_params(params: dict) -> None:
    """Log params, leaving alone those already logged (``mlflow run`` logs its ``-P`` values first)."""
    run = mlflow.active_run()
    existing = MlflowClient().get_run(run.info.run_id).data.params
    fresh = {key: value for key, value in params.items() if key not in existing}
    if fresh:
        mlflow.log_params(fresh)


def log_data(data, n_train: int, n_test: int, n_val: int, n_calibration: int = 0) -> None:
    """Log what the run was trained and tested on: params, tags and an MLflow dataset input.

    ``n_train`` counts the training rows, repeats of a balanced split included.
    """
    # What the data is goes in tags, so that the UI's compare view charts hyperparameters and figures.
    log_params(
        {
            "n_images": len(data.images),
            "n_skipped": len(data.skipped),
            "n_train": n_train,
            "n_validation": n_val,
            "n_test": n_test,
            "n_calibration": n_calibration,
            "image_size": data.image_size,
            "color": data.color,
        }
    )
    mlflow.set_tags({"skface.data_kind": data.kind, "skface.data_source": data.source,
                     "skface.data_digest": data.digest})
    if data.get("extra"):
        mlflow.set_tag("skface.extra_data", ",".join(data.extra))
    if data.kind == "synthetic":
        mlflow.set_tag("skface.warning", "trained on SYNTHETIC faces: knows nothing about real faces")
    with warnings.catch_warnings():
        # MLflow registers its local-file dataset source twice and then warns that a path is
        # ambiguous between the two identical classes; nothing for a user to act on.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        dataset = mlflow.data.from_numpy(
            data.images, targets=data.target, source=data.source if data.kind == "utkface" else None, name=data.name
        )
    try:
        mlflow.log_input(dataset, context="training")
    except MlflowException:
        # Trials running at once (a sweep on Spark) may insert the same dataset into the store together, and all but
        # one hit its unique key; the dataset is there now, so linking it again succeeds.
        mlflow.log_input(dataset, context="training")
    if data.skipped:
        mlflow.log_text("\n".join(f"{name}\t{reason}" for name, reason in data.skipped) + "\n", "data/skipped.tsv")

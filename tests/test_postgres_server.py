"""A team tracking server for real: PostgreSQL, `mlflow server` on loopback, and `mlflow run` against it.

Skipped only where no PostgreSQL server can be started (no binaries, or no way
to run them as a non-root user).
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from skface.tracking.servers import free_port, wait_until_up

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _pg_bin() -> Path | None:
    for candidate in [shutil.which("pg_ctl"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)]:
        if candidate and Path(candidate).with_name("initdb").exists():
            return Path(candidate).parent
    return None


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL refuses to start as root")
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="module")
def postgres_uri():
    pytest.importorskip("psycopg", reason="psycopg (the postgres extra) is needed to talk to PostgreSQL")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    folder = Path(tempfile.mkdtemp(prefix="skface-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        try:
            shutil.chown(folder, "postgres")
        except (LookupError, PermissionError):
            pytest.skip("running as root and no 'postgres' user to run PostgreSQL as")
    folder.chmod(0o755)
    port = free_port()
    subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "skface", "--auth=trust"]),
                   check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l",
                                      str(folder / "server.log"), "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://skface@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(postgres_uri, tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("artifacts")
    port = free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres_uri,
         "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_up(f"{url}/health", server, timeout=120):
            log.flush()
            pytest.fail(f"mlflow server did not start: {Path(log.name).read_text()[-3000:]}")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_mlflow_run_logs_registers_and_promotes_on_the_shared_server(tracking_server, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_server,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", "--experiment-name",
               "skface", "-P", "epochs=1", "-P", "data=synthetic", "-P", "n_synthetic=80", "-P", "image_size=16",
               "-P", "filters=4", "-P", "dense_units=8"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    mlflow.set_tracking_uri(tracking_server)
    try:
        client = MlflowClient()
        run = client.search_runs([client.get_experiment_by_name("skface").experiment_id])[0]
        assert run.info.status == "FINISHED"
        assert "test_age_mae" in run.data.metrics
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1]
        champion = client.get_model_version_by_alias("skface", "champion")
        assert str(champion.version) == "1"
        assert champion.tags["skface.promotion"].startswith("promoted")
        # The model's artifacts went through the server to its artifact store.
        assert any(f.path == "evaluation" for f in client.list_artifacts(run.info.run_id))
    finally:
        mlflow.set_tracking_uri(None)

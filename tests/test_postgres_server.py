"""The README's team tracking server for real: PostgreSQL, `mlflow server --app-name basic-auth` on loopback,
and `mlflow run` against it.

As the README sets it up: the database asks for a password, which the server reads from a password file
(``PGPASSFILE``, as ``~/.pgpass``), never from its command line; the users live in a second database; the
admin's password and the server's secret key come from the environment; and ``--allowed-hosts`` names the
host name that clients use. Skipped only where no PostgreSQL server can be started (no binaries, or no way to
run them as a non-root user).
"""

import base64
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
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
def postgres():
    """A throwaway PostgreSQL cluster on loopback whose user ``skface`` needs a password: ``(port, password)``."""
    pytest.importorskip("psycopg", reason="psycopg (the postgres extra) is needed to talk to PostgreSQL")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    folder = Path(tempfile.mkdtemp(prefix="skface-pg-"))
    data = folder / "data"
    password = secrets.token_urlsafe(16)
    (folder / "password").write_text(password + "\n")
    if os.geteuid() == 0:
        try:
            shutil.chown(folder, "postgres")
            shutil.chown(folder / "password", "postgres")
        except (LookupError, PermissionError):
            pytest.skip("running as root and no 'postgres' user to run PostgreSQL as")
    folder.chmod(0o755)
    port = free_port()
    subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "skface",
                                      "--auth=scram-sha-256", f"--pwfile={folder / 'password'}"]),
                   check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l",
                                      str(folder / "server.log"), "start"]), check=True, capture_output=True)
    try:
        yield port, password
    finally:
        subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


TEAM_HOST = "tracking.team.test"  # the host name in the team's tracking URI, as --allowed-hosts names it


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    """``(url, admin password)`` of the README's authenticated server on loopback."""
    import psycopg

    db_port, db_password = postgres
    with psycopg.connect(host="127.0.0.1", port=db_port, user="skface", dbname="postgres", password=db_password,
                         autocommit=True) as connection:
        connection.execute("CREATE DATABASE mlflow_auth")
    folder = tmp_path_factory.mktemp("server")
    pgpass = folder / "pgpass"
    pgpass.write_text(f"127.0.0.1:{db_port}:*:skface:{db_password}\n")
    pgpass.chmod(0o600)
    (folder / "basic_auth.ini").write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = postgresql://skface@127.0.0.1:{db_port}/mlflow_auth\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    admin_password = secrets.token_urlsafe(16)
    env = {**os.environ, "PGPASSFILE": str(pgpass), "MLFLOW_AUTH_CONFIG_PATH": str(folder / "basic_auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32)}
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
               "--backend-store-uri", f"postgresql://skface@127.0.0.1:{db_port}/postgres",
               "--artifacts-destination", str(tmp_path_factory.mktemp("artifacts")),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--allowed-hosts", f"{TEAM_HOST}:{port},127.0.0.1:{port}"]
    log = open(folder / "server.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_up(f"{url}/health", server, timeout=120):
            log.flush()
            pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-3000:]}")
        yield url, admin_password
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _api(url: str, path: str, body: dict | None = None, *, user: tuple[str, str] | None = None,
         host: str | None = None) -> int:
    """The HTTP status of one REST call (a POST with ``body``, else a GET), as ``user``, with a ``Host`` header."""
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(user).encode()).decode()
    if host is not None:
        headers["Host"] = host
    request = urllib.request.Request(f"{url}/api/{path}", data=None if body is None else json.dumps(body).encode(),
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def users(tracking_server):
    """A trainer and a viewer, created by the admin: ``{name: (name, password)}``."""
    url, admin_password = tracking_server
    users = {name: (name, secrets.token_urlsafe(12)) for name in ("trainer", "viewer")}
    for name, password in users.values():
        assert _api(url, "2.0/mlflow/users/create", {"username": name, "password": password},
                    user=("admin", admin_password)) == 200
    return users


def test_the_team_server_refuses_strangers_and_other_host_names(tracking_server, users):
    url, admin_password = tracking_server
    port = url.rsplit(":", 1)[1]
    create = ("2.0/mlflow/experiments/create", {"name": "by-a-stranger"})
    assert _api(url, *create) == 401  # no credentials
    assert _api(url, *create, user=("admin", admin_password + "x")) == 401
    assert _api(url, *create, user=("nobody", "guess")) == 401
    search = "2.0/mlflow/experiments/search?max_results=1"
    assert _api(url, search, user=users["viewer"], host=f"{TEAM_HOST}:{port}") == 200
    assert _api(url, search, user=users["viewer"], host=f"rebound.example:{port}") == 403


def test_mlflow_run_logs_registers_and_promotes_on_the_shared_server(tracking_server, users, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    url, _ = tracking_server
    name, password = users["trainer"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": name,
           "MLFLOW_TRACKING_PASSWORD": password,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for variable in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(variable, None)
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", "--experiment-name",
               "skface", "-P", "epochs=1", "-P", "data=synthetic", "-P", "n_synthetic=80", "-P", "image_size=16",
               "-P", "filters=4", "-P", "dense_units=8"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", name)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    mlflow.set_tracking_uri(url)
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
    # Others read the registry, but only those given the right move its champion or delete the model.
    alias = {"name": "skface", "alias": "champion", "version": "1"}
    assert _api(url, "2.0/mlflow/registered-models/get?name=skface", user=users["viewer"]) == 200
    assert _api(url, "2.0/mlflow/registered-models/alias", alias, user=users["viewer"]) == 403
    assert _api(url, "2.0/mlflow/registered-models/alias", alias) == 401
    assert _api(url, "2.0/mlflow/registered-models/alias", alias, user=users["trainer"]) == 200

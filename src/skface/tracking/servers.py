"""Servers that skface starts on loopback: MLflow's scoring or tracking server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, *, timeout: float = 120.0) -> bool:
    """Poll ``url`` until it answers 200. False if ``process`` exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


@contextlib.contextmanager
def scoring_server(model_uri: str, log_path, *, workers: int = 1, timeout: float = 180.0, tracking_uri=None):
    """Run ``mlflow models serve`` for ``model_uri`` on a free loopback port.

    The server runs with this interpreter's environment (``--env-manager
    local``, its ``bin`` folder first on ``PATH``) and logs to ``log_path``;
    ``tracking_uri``, if given, is where it resolves ``models:/`` URIs.
    Yields ``(url, process)`` once ``/ping`` answers; stops the server on exit.
    A server that does not come up raises ``RuntimeError`` with the end of its log.
    """
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = str(tracking_uri)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            if not wait_until_up(f"{url}/ping", process, timeout=timeout):
                log.flush()
                raise RuntimeError(f"the scoring server for {model_uri} did not start within {timeout:.0f} s; "
                                   f"the end of its log:\n{Path(log_path).read_text()[-3000:]}")
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

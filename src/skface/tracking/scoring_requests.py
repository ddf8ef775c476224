"""Requests to a served model: a one-image request body, and concurrent clients that time their requests."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request

from .pyfunc import IMAGE_COLUMN, encode_image


def request_body(image_size: int) -> tuple[bytes, bytes]:
    """A scoring request for one synthetic face as an ``image_size`` px JPEG: ``(JSON body, JPEG bytes)``."""
    from PIL import Image

    from ..data.synthetic import make_synthetic_faces

    X, _ = make_synthetic_faces(1, image_size=image_size, color="rgb", random_state=0)
    buf = io.BytesIO()
    Image.fromarray(X[0]).save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    body = {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[encode_image(jpeg)]]}}
    return json.dumps(body).encode(), jpeg


def send_requests(url: str, body: bytes, *, clients: int, seconds: float,
                  max_requests: int) -> tuple[list[float], int, float]:
    """POST ``body`` to ``url`` from ``clients`` threads until ``seconds`` pass or ``max_requests`` are sent.

    A request counts as an error unless it answers 200 with an empty
    ``error`` in its first prediction (a refused connection, a timeout after
    30 s or a malformed answer count too).

    Returns
    -------
    latencies : list of float
        Seconds of each request, errors included, in the order they ended.
    errors : int
        How many of them failed.
    wall : float
        Seconds from the first client's start to the last one's end.
    """
    latencies, errors, lock = [], [0], threading.Lock()
    sent = [0]
    stop_at = time.perf_counter() + seconds

    def client():
        while time.perf_counter() < stop_at:
            with lock:
                if sent[0] >= max_requests:
                    return
                sent[0] += 1
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    ok = response.status == 200 and not json.loads(response.read())["predictions"][0]["error"]
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                ok = False
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - start

"""Keep TensorFlow's start-up chatter out of command-line output."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager


@contextmanager
def _stderr_to(file):
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and list its devices with its C++ start-up logs hidden.

    TensorFlow prints oneDNN and CUDA notices from C++ before its own log
    level is read, so ``TF_CPP_MIN_LOG_LEVEL`` alone cannot hide them. This
    sends file descriptor 2 to a temporary file meanwhile; if the import
    fails, what was captured is printed before the error propagates. Meant
    for command-line entry points, not for library code.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryFile(mode="w+") as log:
        try:
            with _stderr_to(log):
                import tensorflow as tf

                tf.config.list_physical_devices()
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read())
            raise

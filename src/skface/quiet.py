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
    """Import TensorFlow and list its devices with its C++ start-up logs hidden; a no-op once imported.

    TensorFlow prints oneDNN and CUDA notices from C++ before its own log
    level is read (among them ``E0000 ... failed call to cuInit``, which reads
    as a failure on every machine without a GPU), so ``TF_CPP_MIN_LOG_LEVEL``
    alone cannot hide them. This sends file descriptor 2 to a temporary file
    meanwhile; if the import fails, what was captured is printed before the
    error propagates, so real errors still show. It also makes TensorFlow's
    later C++ notices and warnings quiet (``TF_CPP_MIN_LOG_LEVEL=2``, unless
    the environment sets it), and its errors still print. The command lines,
    and the library's first uses of TensorFlow (fitting, loading a network,
    finding faces), call it.
    """
    if "tensorflow" in sys.modules:
        return
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

"""TensorFlow's start-up chatter stays out of what users see; its real errors do not."""

import os
import subprocess
import sys


def _run(code: str, **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**environment, **env})


def test_predicting_with_the_library_prints_no_tensorflow_notices():
    result = _run("import numpy as np\n"
                  "from skface import load_pretrained\n"
                  "print(load_pretrained().predict([np.zeros((90, 90, 3), np.uint8)]).shape)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 2)"
    for notice in ("cuInit", "oneDNN", "cuda drivers", "E0000", "I0000", "W0000", "absl::InitializeLog"):
        assert notice not in result.stderr, result.stderr


def test_a_failing_tensorflow_import_still_shows_what_it_printed(tmp_path):
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.write(2, b'libcudnn: real problem\\n')\n"
                                      "raise ImportError('tensorflow is broken here')\n")
    result = _run("from skface.quiet import import_tensorflow_quietly\nimport_tensorflow_quietly()",
                  PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    assert result.returncode != 0
    assert "libcudnn: real problem" in result.stderr and "tensorflow is broken here" in result.stderr

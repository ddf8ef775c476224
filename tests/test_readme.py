"""The README is a contract: its Python snippets run as written, in order, in a fresh folder.

A snippet that imports Spark (pyspark, joblibspark or skface.spark) runs on a local Spark session, as it
does on a laptop; where pyspark or Java is missing it is skipped, and the test says so.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPARK = re.compile(r"^\s*(?:from|import) (?:pyspark|joblibspark|skface\.spark)\b", flags=re.M)


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def _spark_runs_here() -> bool:
    return importlib.util.find_spec("pyspark") is not None and bool(shutil.which("java") or os.environ.get("JAVA_HOME"))


def test_the_readme_has_python_snippets():
    assert len(_snippets()) >= 3
    assert sum(bool(SPARK.search(code)) for code in _snippets()) == 2  # scoring and searching on Spark


@pytest.mark.slow
def test_every_python_snippet_runs_as_written(tmp_path):
    """Each snippet runs in one folder where a user who cloned the repository would stand, one after the other."""
    shutil.copytree(REPO / "tests" / "data", tmp_path / "tests" / "data")
    skipped = []
    for number, code in enumerate(_snippets(), start=1):
        if SPARK.search(code) and not _spark_runs_here():
            skipped.append(number)
            continue
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"README snippet {number} failed:\n{code}\n{result.stderr[-3000:]}"
    if skipped:
        pytest.skip(f"README snippets {skipped} run on Spark, which needs pyspark and Java 17 or newer; the others ran")

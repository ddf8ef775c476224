"""The README is a contract: its Python snippets run as written, in order, in a fresh folder."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_the_readme_has_python_snippets():
    assert len(_snippets()) >= 3


@pytest.mark.slow
def test_every_python_snippet_runs_as_written(tmp_path):
    """Each snippet runs in one folder where a user who cloned the repository would stand, one after the other."""
    shutil.copytree(REPO / "tests" / "data", tmp_path / "tests" / "data")
    for number, code in enumerate(_snippets(), start=1):
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"README snippet {number} failed:\n{code}\n{result.stderr[-3000:]}"

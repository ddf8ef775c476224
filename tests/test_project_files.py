"""The MLproject and its environment stay in step with the package."""

import re
import tomllib
from pathlib import Path

import yaml

from skface.cli.options import ESTIMATOR_OPTIONS

REPO = Path(__file__).resolve().parents[1]


def test_python_env_lists_the_package_dependencies():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = yaml.safe_load((REPO / "python_env.yaml").read_text())
    assert env["dependencies"] == pyproject["project"]["dependencies"]


def test_every_parameter_reaches_its_command():
    project = yaml.safe_load((REPO / "MLproject").read_text())
    for name, entry in project["entry_points"].items():
        placeholders = set(re.findall(r"\{(\w+)\}", entry["command"]))
        assert placeholders == set(entry["parameters"]), name
        for param, spec in entry["parameters"].items():
            assert spec["type"] in ("string", "float", "path", "uri") and "default" in spec, (name, param)


def test_training_entry_points_expose_every_hyperparameter():
    project = yaml.safe_load((REPO / "MLproject").read_text())
    for name in ("main", "sweep"):
        assert set(ESTIMATOR_OPTIONS) <= set(project["entry_points"][name]["parameters"]), name

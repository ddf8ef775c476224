"""The MLproject and its environment stay in step with the package."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from skface.cli.options import DATA_DEFAULTS, estimator_options

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


@pytest.mark.parametrize("entry, command", [("main", "train"), ("sweep", "sweep")])
def test_training_entry_points_expose_every_hyperparameter_with_the_estimators_default(entry, command):
    """MLproject's defaults are the command line's, which are the estimator's but for COMMAND_LINE_DEFAULTS."""
    parameters = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"][entry]["parameters"]
    options = estimator_options(command)
    assert set(options) <= set(parameters)
    for name, option in options.items():
        assert option.parse(str(parameters[name]["default"])) == option.default, name
    for name, default in DATA_DEFAULTS.items():
        value = parameters[name]["default"]
        assert (value if isinstance(default, str) else type(default)(value)) == default, name


def test_every_hyperparameter_has_help_from_the_estimators_docstring():
    for name, option in estimator_options().items():
        assert len(option.help) > 20, name
    assert "Choices" not in estimator_options()["architecture"].help
    assert estimator_options()["architecture"].choices == ("seed", "vgg_bn")

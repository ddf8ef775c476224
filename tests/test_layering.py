"""The package's layers: what each group of modules may import.

- ``skface.data`` and the top-level helpers (metrics, evaluation, plots,
  configurations, exceptions) import neither TensorFlow/Keras nor MLflow;
- ``skface.network`` and ``skface.faces`` import no MLflow;
- ``skface.spark`` keeps to the tracking layer's rules;
- nothing in the library (data, network, tracking) imports the command line
  (``skface.cli``: argparse helpers) or the ``experiments/`` scripts.

Imports inside functions count too: a lazy import is still a dependency.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "skface"
TOP_LEVEL_HELPERS = ("metrics", "evaluation", "plots", "configurations", "exceptions")
HEAVY = ("tensorflow", "keras", "mlflow")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of everything the module imports, at any depth."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "spark":
        return "tracking"  # it scores with the logged model and searches with the sweep: the tracking layer
    if len(parts) > 1 and parts[1] in ("data", "network", "faces", "tracking", "cli"):
        return parts[1]
    if len(parts) > 1 and parts[1] in TOP_LEVEL_HELPERS:
        return "data"
    return "other"


FORBIDDEN = {
    "data": ("tensorflow", "keras", "mlflow", "skface.faces", "skface.network", "skface.tracking", "skface.cli",
             "experiments"),
    "network": ("mlflow", "skface.tracking", "skface.cli", "experiments"),
    # The network's pipeline puts the face step first, so faces never reach up to the network.
    "faces": ("mlflow", "skface.network", "skface.tracking", "skface.cli", "experiments"),
    "tracking": ("skface.cli", "experiments"),
}


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p))
def test_each_module_keeps_to_its_layer(path):
    layer = _layer(_module_name(path))
    bad = sorted(name for name in _imports(path) for prefix in FORBIDDEN.get(layer, ())
                 if _matches(name, prefix))
    assert not bad, f"{_module_name(path)} (layer {layer!r}) imports {bad}"


def test_subpackages_are_one_level_deep():
    for path in PACKAGE.rglob("*.py"):
        assert len(path.relative_to(PACKAGE).parts) <= 2, path


def test_importing_skface_and_the_options_loads_no_tensorflow_or_mlflow():
    code = ("import sys, skface, skface.cli.options; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

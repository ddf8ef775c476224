"""The registry's champion rule: which registered version holds the alias ``champion``.

Every run registers a new version of its registered model. The alias
``champion`` moves to the new version when

1. no version holds it yet; or
2. the champion was trained on synthetic faces and the new version on real
   ones (a synthetic run never displaces a real-face champion); or
3. both were evaluated on the same data source and the new version's test
   ``score`` (mean of gender accuracy and age R^2) is higher.

Otherwise it stays. The tag ``skface.promotion`` on each version says which
case applied and with what figures.
"""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION = "champion"


def promote(client: MlflowClient, name: str, version: str, *, data_kind: str, data_source: str,
            score: float) -> tuple[bool, str]:
    """Apply the champion rule (see this module's docstring) to a new version.

    Returns whether the alias moved, and why; the reason is also set as the
    version's ``skface.promotion`` tag.
    """
    for key, value in {"skface.data_kind": data_kind, "skface.data_source": data_source,
                       "skface.test_score": f"{score:.6f}"}.items():
        client.set_model_version_tag(name, version, key, value)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    if champion is None:
        promoted, reason = True, "promoted: first champion of this registered model"
    else:
        tags = champion.tags
        their_kind, their_source = tags.get("skface.data_kind"), tags.get("skface.data_source")
        their_score = float(tags.get("skface.test_score", "nan"))
        if their_kind == "synthetic" and data_kind == "utkface":
            promoted = True
            reason = f"promoted: trained on real faces, the champion v{champion.version} on synthetic ones"
        elif their_source != data_source:
            promoted = False
            reason = (
                f"not promoted: champion v{champion.version} was tested on {their_source}, this version "
                f"on {data_source}; scores on different data are not compared"
            )
        elif score > their_score:
            promoted = True
            reason = f"promoted: test score {score:.4f} beats champion v{champion.version}'s {their_score:.4f}"
        else:
            promoted = False
            reason = (
                f"not promoted: test score {score:.4f} does not beat champion v{champion.version}'s "
                f"{their_score:.4f}"
            )
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "skface.promotion", reason)
    return promoted, reason


def register(model_info, name: str, data, score: float) -> tuple[str, bool, str]:
    """Register the logged model as a new version of ``name`` and apply the champion rule."""
    client = MlflowClient()
    version = str(mlflow.register_model(model_info.model_uri, name).version)
    promoted, reason = promote(client, name, version, data_kind=data.kind, data_source=data.source, score=score)
    mlflow.set_tags({"skface.registered_version": version, "skface.promotion": reason})
    return version, promoted, reason

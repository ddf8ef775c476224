"""The registry's champion rule: which registered version holds the alias ``champion``.

Every run registers a new version of its registered model. The alias
``champion`` moves to the new version when

1. no version holds it yet; or
2. the champion was trained on synthetic faces and the new version on real
   ones; or
3. both were trained on the same kind of faces and, scored on the new
   version's own test faces, the new version's test ``score`` (mean of gender
   accuracy and age R^2) beats the champion's.

A version trained on synthetic faces never displaces a champion trained on
real ones. Case 3 compares like with like: the champion is loaded and scored
on exactly the faces the new version was tested on, whatever data either was
trained on. (Where those faces were in the champion's own training data, the
champion scores high, and the rule keeps it: it errs on the side of the
champion.) The tag ``skface.promotion`` on each version says which case
applied and with what figures.
"""

from __future__ import annotations

from collections.abc import Callable

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .runs import stops_ignored

CHAMPION = "champion"


def promote(client: MlflowClient, name: str, version: str, *, data_kind: str, data_source: str,
            score: float, score_champion: Callable[[str], float]) -> tuple[bool, str]:
    """Apply the champion rule (see this module's docstring) to a new version.

    Parameters
    ----------
    client : MlflowClient
    name, version : str
        The registered model and its new version.
    data_kind, data_source : str
        What the new version was trained and tested on (``"utkface"`` or
        ``"synthetic"``, and the folder or ``"synthetic"``).
    score : float
        The new version's test score.
    score_champion : callable
        Scores a model URI on the new version's test faces; called with the
        champion's ``models:/NAME/VERSION`` URI when the rule compares them.

    Returns
    -------
    promoted : bool
        Whether the alias moved.
    reason : str
        Why, also set as the version's ``skface.promotion`` tag.
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
        their_kind = champion.tags.get("skface.data_kind")
        if their_kind == "synthetic" and data_kind == "utkface":
            promoted = True
            reason = f"promoted: trained on real faces, the champion v{champion.version} on synthetic ones"
        elif their_kind == "utkface" and data_kind == "synthetic":
            promoted = False
            reason = (f"not promoted: trained on synthetic faces, the champion v{champion.version} on real ones; "
                      "a synthetic run never displaces a real-face champion")
        else:
            their_score = score_champion(f"models:/{name}/{champion.version}")
            promoted = score > their_score
            reason = (f"{'promoted' if promoted else 'not promoted'}: test score {score:.4f} "
                      f"{'beats' if promoted else 'does not beat'} champion v{champion.version}'s {their_score:.4f} "
                      f"on the same {_test_faces(data_source)}")
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "skface.promotion", reason)
    return promoted, reason


def _test_faces(source: str) -> str:
    """How a reason names the test faces of ``source``."""
    return "synthetic test faces" if source == "synthetic" else f"test faces of {source}"


def register(model_info, name: str, data, score: float,
             score_champion: Callable[[str], float]) -> tuple[str, bool, str]:
    """Register the logged model as a new version of ``name`` and apply the champion rule (see :func:`promote`).

    A registration that is stopped (Ctrl-C, SIGTERM) or fails part way is
    undone: the version is deleted and ``champion`` is where it was, so no
    version is left without its tags, and nothing of a stopped run is served.
    """
    client = MlflowClient()
    champion = _champion_version(client, name)
    before = _versions_of_run(client, name, model_info.run_id)
    try:
        version = str(mlflow.register_model(model_info.model_uri, name).version)
        promoted, reason = promote(client, name, version, data_kind=data.kind, data_source=data.source, score=score,
                                   score_champion=score_champion)
        mlflow.set_tags({"skface.registered_version": version, "skface.promotion": reason})
    except BaseException:
        with stops_ignored():
            _undo(client, name, _versions_of_run(client, name, model_info.run_id) - before, champion)
        raise
    return version, promoted, reason


def _champion_version(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _versions_of_run(client: MlflowClient, name: str, run_id: str) -> set[str]:
    return {str(v.version) for v in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")}


def _undo(client: MlflowClient, name: str, versions: set[str], champion: str | None) -> None:
    """Delete ``versions`` of ``name``, first putting ``champion`` back where one of them took it."""
    if _champion_version(client, name) in versions:
        if champion is None:
            client.delete_registered_model_alias(name, CHAMPION)
        else:
            client.set_registered_model_alias(name, CHAMPION, champion)
    for version in versions:
        client.delete_model_version(name, version)

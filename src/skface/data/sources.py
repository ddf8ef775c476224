"""Choosing the training data: a UTKFace folder or archive, or the synthetic faces."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..exceptions import UTKFaceError
from .synthetic import make_synthetic_faces
from .utkface import load_utkface

_ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar")


class SyntheticDataWarning(UserWarning):
    """Training fell back to (or was asked for) synthetic faces, not real ones."""


def find_utkface(data_dir: str | Path = "data") -> Path | None:
    """First UTKFace folder or archive under ``data_dir``, or None.

    A folder counts when it holds, at any depth, a file named like
    ``[age]_[gender]_[race]_[date&time].jpg.chip.jpg``. Archives are taken by
    their extension. Entries are tried in name order.
    """
    root = Path(data_dir)
    if not root.is_dir():
        return None
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.name.lower().endswith(_ARCHIVES):
            return entry
        if entry.is_dir() and next(entry.rglob("*_*_*_*.jpg*"), None) is not None:
            return entry
    return None


def resolve_data(
    data: str = "auto",
    *,
    image_size: int = 64,
    color: str = "grayscale",
    n_synthetic: int = 2000,
    random_state: int | None = 0,
    data_dir: str | Path = "data",
    verbose: bool = True,
) -> Bunch:
    """Load the data an experiment asks for.

    Parameters
    ----------
    data : str, default="auto"
        ``"auto"``: the first UTKFace folder or archive found under
        ``data_dir``, else the synthetic faces (with a
        :class:`SyntheticDataWarning`). ``"synthetic"``: the synthetic faces.
        Anything else: the path of a UTKFace folder or archive.
    image_size, color
        As in :func:`skface.load_utkface`.
    n_synthetic : int, default=2000
        Number of synthetic faces, when they are used.
    random_state : int or None, default=0
        Seed of the synthetic faces.
    data_dir : str or path, default="data"
        Where ``"auto"`` looks.
    verbose : bool, default=True
        Progress bar while decoding UTKFace.

    Returns
    -------
    data : Bunch
        ``images``, ``target`` (n, 2) [age, gender], ``kind`` ("utkface" or
        ``"synthetic"``), ``source`` (``"synthetic"`` or the resolved path),
        ``name`` (a short name for MLflow), ``digest`` (hash of the labels and
        file names), ``filenames`` and ``skipped``.
    """
    if not isinstance(data, str) or not data:
        raise ValueError(f"data must be 'auto', 'synthetic' or a path, got {data!r}.")
    path = None
    if data == "auto":
        path = find_utkface(data_dir)
        if path is None:
            warnings.warn(
                f"No UTKFace folder or archive found under {Path(data_dir).resolve()}; using "
                f"{n_synthetic} SYNTHETIC faces. A model trained on them knows nothing about real "
                "faces, and a model trained on real faces scores badly on them: put UTKFace under ./data/ "
                "or pass -P data=PATH.",
                SyntheticDataWarning,
                stacklevel=2,
            )
    elif data != "synthetic":
        path = Path(data).expanduser()
        if not path.exists():
            raise UTKFaceError(
                f"data={data!r} is neither 'auto', 'synthetic' nor an existing path; pass a UTKFace "
                "folder or a .zip/.tar.gz archive of it."
            )
    if path is None:
        images, target = make_synthetic_faces(
            n_synthetic, image_size=image_size, color=color, random_state=random_state
        )
        filenames = np.array([f"synthetic_{i}" for i in range(len(images))])
        bunch = Bunch(
            images=images,
            target=target,
            kind="synthetic",
            source="synthetic",
            name=f"synthetic-{n_synthetic}-seed{random_state}",
            filenames=filenames,
            skipped=[],
        )
    else:
        faces = load_utkface(path, image_size=image_size, color=color, verbose=verbose)
        resolved = str(path.resolve())
        bunch = Bunch(
            images=faces.images,
            target=faces.target,
            kind="utkface",
            source=resolved,
            name=f"utkface-{path.resolve().name}",
            filenames=np.asarray(faces.filenames),
            skipped=list(faces.skipped),
        )
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(bunch.target).tobytes())
    digest.update("\n".join(map(str, bunch.filenames)).encode())
    bunch.digest = digest.hexdigest()[:16]
    bunch.image_size, bunch.color = image_size, color
    return bunch


def train_test_data(data: str = "auto", *, test_split: float = 0.2, seed: int = 0, **kwargs) -> Bunch:
    """:func:`resolve_data` split into training and test faces, stratified by age band and gender.

    Every training command splits this way, so that the same ``data`` and
    ``seed`` give the same test faces everywhere.

    Parameters
    ----------
    data : str, default="auto"
        As in :func:`resolve_data`.
    test_split : float, default=0.2
        Share of the faces held out for testing, in (0, 1).
    seed : int, default=0
        Seed of the split and of the synthetic faces.
    **kwargs
        ``image_size``, ``color``, ``n_synthetic``, ... of :func:`resolve_data`.

    Returns
    -------
    split : Bunch
        ``data`` (what :func:`resolve_data` returned), ``X_train``,
        ``X_test``, ``y_train``, ``y_test`` and ``test_filenames``.
    """
    from ..evaluation import stratified_split

    if not 0 < test_split < 1:
        raise ValueError(f"test_split must be between 0 and 1 (exclusive), got {test_split}.")
    faces = resolve_data(data, random_state=seed, **kwargs)
    train, test, _, _ = stratified_split(np.arange(len(faces.target)), faces.target, test_size=test_split,
                                         random_state=seed)
    train, test = np.sort(train), np.sort(test)
    return Bunch(data=faces, X_train=faces.images[train], X_test=faces.images[test], y_train=faces.target[train],
                 y_test=faces.target[test], test_filenames=np.asarray(faces.filenames)[test])

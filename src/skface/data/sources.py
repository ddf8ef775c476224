"""Choosing the training data: a UTKFace folder or archive, or the synthetic faces."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..exceptions import UTKFaceError
from .synthetic import make_synthetic_faces
from .utkface import CROP_SIZE, load_utkface

_ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar")
#: Faces younger than this are children for ``child_calibration_split``: the age bands 0-2 and 3-12.
CHILD_AGE = 13


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
        file names), ``filenames``, ``race`` (UTKFace's race codes; -1 for
        synthetic faces) and ``skipped``.
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
        race = np.full(len(images), -1)
        bunch = Bunch(
            images=images,
            target=target,
            kind="synthetic",
            source="synthetic",
            name=f"synthetic-{n_synthetic}-seed{random_state}",
            filenames=filenames,
            race=race,
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
            race=np.asarray(faces.race),
            skipped=list(faces.skipped),
        )
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(bunch.target).tobytes())
    digest.update("\n".join(map(str, bunch.filenames)).encode())
    bunch.digest = digest.hexdigest()[:16]
    bunch.image_size, bunch.color = image_size, color
    return bunch


def train_test_data(data: str = "auto", *, extra_data=(), test_split: float = 0.2, calibration_split: float = 0.0,
                    child_calibration_split: float = 0.0, train_on_extra: bool = True,
                    balance_age_bands: bool = False, second_view=None, seed: int = 0, **kwargs) -> Bunch:
    """:func:`resolve_data` split into training and test faces, stratified by age band and gender.

    Every training command splits this way, so that the same ``data`` and
    ``seed`` give the same test faces everywhere: ``extra_data`` only adds
    training faces, and the calibration faces come out of the training part.

    Parameters
    ----------
    data : str, default="auto"
        As in :func:`resolve_data`: the source that the test faces come from.
    extra_data : str or sequence of str, default=()
        More UTKFace folders or archives, for training (and calibration) only.
        A face that is also in ``data`` or in an earlier extra source (see
        :func:`skface.load_utkface`) is dropped and listed in ``skipped``.
    test_split : float, default=0.2
        Share of ``data``'s faces held out for testing, in (0, 1).
    calibration_split : float, default=0.0
        Share of the training faces held out to calibrate the age range and
        the gender probability (:meth:`AgeGenderCNN.conformalize`), in
        [0, 1); 0 for none. It is held out of ``data``'s training part and of
        ``extra_data``'s faces separately, so that ``data``'s calibration
        faces are the same with or without extra sources: a model fine-tuned
        on ``data`` alone from one trained with them (``skface train
        --init-model``) is calibrated on faces that neither trained on.
    child_calibration_split : float, default=0.0
        Share of the training faces under 13 (:data:`CHILD_AGE`) held out for
        calibration, if larger than ``calibration_split``; 0 for the same
        share as the others. A child's range is a year or two wide, and few
        calibration faces are children, so their bands' quantiles are the
        noisiest: this holds out more children without taking adults from
        training (MODEL_CARD.md gives what it did for the shipped recipe).
        The faces that ``calibration_split`` alone holds out are held out as
        well, and the share applies to each source, as ``calibration_split``
        does.
    train_on_extra : bool, default=True
        Whether ``extra_data``'s faces are trained on. False keeps only their
        calibration faces, the same ones as when they are trained on: the
        fine-tuning on ``data`` alone of a model trained on both is then
        calibrated on every face that neither trained on, of every source.
        It needs a ``calibration_split``.
    balance_age_bands : bool, default=False
        Repeat the training faces of age bands that the extra sources dilute,
        towards their share of ``data``'s training part (see
        :func:`balanced_index`).
    second_view : callable, optional
        Train on two views of each training face: as it is, and as
        ``second_view(images, image_size=..., color=..., verbose=...)`` gives
        it from the face at the full resolution of a UTKFace crop (200 px RGB:
        the sources are decoded again, through the cache).
        :func:`skface.faces.aligned_views`, the face as the face step hands a
        photo's face to the network, is the one skface trains with
        (``skface train --aligned-views``). Doubles the training faces; the
        test and calibration faces stay as they are.
    seed : int, default=0
        Seed of the splits, of the repeats and of the synthetic faces.
    **kwargs
        ``image_size``, ``color``, ``n_synthetic``, ... of :func:`resolve_data`.

    Returns
    -------
    split : Bunch
        ``data`` (what :func:`resolve_data` returned, with the extra sources'
        faces appended and their ``source`` listed in ``extra``), ``X_train``,
        ``X_test``, ``y_train``, ``y_test``, ``test_filenames``,
        ``race_test``, and
        ``X_calibration``, ``y_calibration`` (empty without a calibration
        split).
    """
    from ..evaluation import stratified_split

    if not 0 < test_split < 1:
        raise ValueError(f"test_split must be between 0 and 1 (exclusive), got {test_split}.")
    if not 0 <= calibration_split < 1:
        raise ValueError(f"calibration_split must be in [0, 1), got {calibration_split}; 0 holds out none.")
    if child_calibration_split and not calibration_split <= child_calibration_split < 1:
        raise ValueError(f"child_calibration_split must be in [calibration_split, 1) = [{calibration_split}, 1), "
                         f"got {child_calibration_split}; 0 holds out children at calibration_split's share.")
    if child_calibration_split and not calibration_split:
        raise ValueError("child_calibration_split holds out more children than calibration_split, which is 0: the "
                         "age ranges need calibration faces of every age; give a calibration_split too.")
    extra_data = [extra_data] if isinstance(extra_data, (str, Path)) else list(extra_data or ())
    if extra_data and not train_on_extra and not calibration_split:
        raise ValueError("train_on_extra=False keeps only the extra sources' calibration faces, and "
                         "calibration_split=0 holds out none, so extra_data would go unused; give a calibration_split "
                         "(the one the model was first trained with), or leave out extra_data.")
    faces = resolve_data(data, random_state=seed, **kwargs)
    train, test, _, _ = stratified_split(np.arange(len(faces.target)), faces.target, test_size=test_split,
                                         random_state=seed)
    train, test = np.sort(train), np.sort(test)
    reference = faces.target[train]
    # The calibration faces of data are held out from data's training part as if there were no extra sources,
    # and the extra sources' own from theirs: a model trained on both and one fine-tuned from it on data alone
    # are calibrated on faces that neither trained on.
    shares = (calibration_split, child_calibration_split)
    train, calibration = _held_out(train, faces.target, *shares, seed)
    if extra_data:
        faces = _with_extra_sources(faces, extra_data, **kwargs)
        extra_train, extra_calibration = _held_out(np.arange(len(reference) + len(test), len(faces.target)),
                                                   faces.target, *shares, seed)
        if train_on_extra:
            train = np.concatenate([train, extra_train])
        calibration = np.concatenate([calibration, extra_calibration])
    if balance_age_bands:
        train = train[balanced_index(faces.target[train], reference, random_state=seed)]
    X_train, y_train = faces.images[train], faces.target[train]
    if second_view is not None:
        X_train = np.concatenate([X_train, _second_views(second_view, data, extra_data if train_on_extra else [],
                                                         faces, train, seed=seed, **kwargs)])
        y_train = np.concatenate([y_train, y_train])
    return Bunch(data=faces, X_train=X_train, X_test=faces.images[test], y_train=y_train,
                 y_test=faces.target[test], test_filenames=np.asarray(faces.filenames)[test], race_test=faces.race[test],
                 X_calibration=faces.images[calibration], y_calibration=faces.target[calibration])


def _held_out(rows: np.ndarray, target: np.ndarray, share: float, child_share: float,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` split into those kept and a ``share`` held out (stratified, sorted), then more of the children kept
    held out until ``child_share`` of them is; none held out of fewer than 2."""
    from ..evaluation import stratified_split

    if not share or len(rows) < 2:
        return rows, rows[:0]
    kept, held, _, _ = stratified_split(rows, target[rows], test_size=share, random_state=seed)
    children = kept[target[kept, 0] < CHILD_AGE]
    # Of the children kept, the share that brings the children held out to child_share of them all.
    more_share = (child_share - share) / (1 - share)
    if more_share > 0 and len(children):
        more = children if np.ceil(more_share * len(children)) >= len(children) else stratified_split(
            children, target[children], test_size=more_share, random_state=seed)[1]
        kept, held = np.setdiff1d(kept, more), np.concatenate([held, more])
    return np.sort(kept), np.sort(held)


def _second_views(view, data: str, extra_data: list, faces: Bunch, rows: np.ndarray, *, seed: int,
                  image_size: int = 64, color: str = "grayscale", verbose: bool = True, **kwargs) -> np.ndarray:
    """``view`` of ``faces``'s ``rows``, from the same data decoded at the size of a UTKFace crop, in RGB."""
    size = CROP_SIZE
    full = resolve_data(data, random_state=seed, image_size=size, color="rgb", verbose=verbose, **kwargs)
    if extra_data:
        full = _with_extra_sources(full, extra_data, image_size=size, color="rgb", verbose=verbose)
    # Without the extra sources (none of their faces trained on), the same data's faces come first.
    n = len(full.target)
    if list(full.filenames) != list(faces.filenames[:n]) or not np.array_equal(full.target, faces.target[:n]):
        raise UTKFaceError(f"{faces.source} changed while it was read; train again.")
    unique, inverse = np.unique(rows, return_inverse=True)
    views = np.asarray(view(full.images[unique], image_size=image_size, color=color, verbose=verbose))
    expected = (len(unique), image_size, image_size, faces.images.shape[-1])
    if views.shape != expected or views.dtype != np.uint8:
        raise ValueError(f"second_view must return uint8 images of shape {expected}, one per face; got "
                         f"{views.dtype} of shape {views.shape}.")
    return views[inverse]


def _with_extra_sources(faces: Bunch, extra_data: list, *, image_size: int = 64, color: str = "grayscale",
                        verbose: bool = True, **_) -> Bunch:
    """``faces`` (a UTKFace source) with the faces of ``extra_data`` appended, each photo once."""
    if faces.kind != "utkface":
        raise ValueError("extra_data adds UTKFace faces to UTKFace faces; pass data=PATH of a UTKFace folder "
                         f"or archive, not {faces.source!r}.")
    paths = [Path(path).expanduser() for path in extra_data]
    combined = load_utkface([faces.source, *paths], image_size=image_size, color=color, verbose=verbose)
    n = len(faces.target)
    first = [str(name).split("/", 1)[1] for name in combined.filenames[:n]]
    if len(combined.target) < n or first != [str(name) for name in faces.filenames]:
        raise UTKFaceError(f"{faces.source} holds the same photo more than once; load it with load_utkface "
                           "and look at its skipped list.")
    added = slice(n, None)
    out = Bunch(**faces)
    out.images = np.concatenate([faces.images, combined.images[added]])
    out.target = np.concatenate([faces.target, combined.target[added]])
    out.filenames = np.concatenate([np.asarray(faces.filenames), np.asarray(combined.filenames[added])])
    out.race = np.concatenate([faces.race, combined.race[added]])
    out.skipped = list(combined.skipped)
    out.extra = [str(path.resolve()) for path in paths]
    out.name = "+".join([faces.name, *(f"utkface-{path.resolve().name}" for path in paths)])
    digest = hashlib.sha256(faces.digest.encode())
    digest.update(np.ascontiguousarray(out.target).tobytes())
    digest.update("\n".join(map(str, out.filenames)).encode())
    out.digest = digest.hexdigest()[:16]
    return out


def balanced_index(y, reference, *, random_state: int | None = 0) -> np.ndarray:
    """Indices of ``y``'s rows with the rows of under-represented age bands repeated.

    A band whose share of ``y`` is below its share of ``reference`` has its
    rows repeated ``reference share / share`` times (a fractional part by a
    random draw without replacement): it then holds as many rows as its
    reference share of ``y``'s own size, so that more faces of a mostly
    adult source do not dilute the children that the reference holds. (The
    repeats grow the total, so its share of the result stays somewhat
    below the reference's.) No row is dropped.

    Parameters
    ----------
    y : array-like of shape (n, 2)
        ``[age, gender]`` of the training faces.
    reference : array-like of shape (m, 2)
        Faces whose age-band mix the result should reach at least.
    random_state : int or None, default=0
        Seed of the fractional repeats.

    Returns
    -------
    index : ndarray of int
        Every row of ``y`` once, plus the repeats, in ascending order.
    """
    from ..evaluation import age_band

    rng = np.random.default_rng(random_state)
    bands, reference_bands = age_band(np.asarray(y)[:, 0]), age_band(np.asarray(reference)[:, 0])
    index = [np.arange(len(bands))]
    for band in np.unique(bands):
        rows = np.flatnonzero(bands == band)
        factor = np.mean(reference_bands == band) / (len(rows) / len(bands))
        if factor > 1:
            whole, fraction = int(np.floor(factor)) - 1, factor - np.floor(factor)
            index += [rows] * whole + [rng.choice(rows, size=int(round(fraction * len(rows))), replace=False)]
    return np.sort(np.concatenate(index))

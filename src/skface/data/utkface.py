"""Loading the UTKFace data set (faces labelled with age, gender and race).

:func:`load_utkface` reads a folder of UTKFace images, or the ``.zip`` /
``.tar.gz`` archive downloaded from Kaggle, takes the labels from the file
names, decodes every image with :func:`skface.data.imaging.decode_image` and keeps
the decoded arrays in an on-disk cache so that the next load is fast.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import stat
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from numbers import Integral
from pathlib import Path

import numpy as np
import PIL
from sklearn.utils import Bunch
from tqdm.auto import tqdm

from ..exceptions import ImageDecodeError, UTKFaceError
from .imaging import check_image_params, decode_image, n_channels

__all__ = [
    "load_utkface", "SkippedFilesWarning", "CacheWarning", "MAX_AGE", "MAX_FILE_BYTES",
    "MAX_COMPRESSION_RATIO",
]

#: Oldest plausible age in years; a file name with a higher age is skipped.
#: (The oldest person in UTKFace is 116.)
MAX_AGE = 120
#: Side of UTKFace's aligned and cropped faces, in pixels.
CROP_SIZE = 200

#: Default of ``load_utkface(max_file_bytes=...)``: 20 MB, far above a face
#: crop (UTKFace's are about 10-50 KB) and a full camera photo.
MAX_FILE_BYTES = 20_000_000

#: A zip member of over 1 MB that inflates more than this many times is
#: skipped, unread. UTKFace images are JPEG or PNG, already compressed, which
#: deflate leaves near 1:1; a ratio of 100 is only reached by padding (a zip
#: bomb). Smaller members cost little whatever their ratio, and a small text
#: file is better reported as "not an image file".
MAX_COMPRESSION_RATIO = 100

# Thumbnail correlation from which a face of a later source is a near-copy of an earlier one (see load_utkface).
NEAR_COPY_CORRELATION = 0.995
_RATIO_FLOOR = 1_000_000

# Bump when the layout of a cache file or the meaning of its arrays changes.
_CACHE_FORMAT = 2  # 2: JPEG files decoded at full resolution unless far larger than the output
_CACHE_KEYS = ("images", "target", "race", "filenames", "skipped")

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_CHIP_SUFFIX = ".jpg.chip.jpg"
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_FIELD_NAMES = ("age", "gender", "race", "date&time")
_NAMING = (
    "[age]_[gender]_[race]_[date&time].jpg.chip.jpg, "
    "e.g. 25_0_1_20170116174525125.jpg.chip.jpg"
)
_DIGITS = re.compile(r"[0-9]+")

# Each skip reason starts with one of these, followed by ": " and the details,
# so that reasons can be counted by kind, also after a round trip through the cache.
_NOT_IMAGE = "not an image file"
_MALFORMED = "malformed file name"
_BAD_AGE = "age out of range"
_BAD_GENDER = "invalid gender"
_UNREADABLE = "unreadable image"
_LINK = "link not followed"
_NOT_REGULAR = "not a regular file"
_TOO_LARGE = "too large"


class SkippedFilesWarning(UserWarning):
    """Some files of a UTKFace folder or archive were not loaded.

    The ``skipped`` field of the result lists each file with the reason.
    """


class CacheWarning(UserWarning):
    """The cache of decoded UTKFace images was damaged or could not be written.

    The data are loaded anyway; only the speed of the next load is affected.
    """


def load_utkface(
    path: str | os.PathLike | list[str | os.PathLike] | tuple,
    *,
    image_size: int = 64,
    color: str = "grayscale",
    return_X_y: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    max_file_bytes: int | None = MAX_FILE_BYTES,
    verbose: bool = True,
) -> Bunch | tuple[np.ndarray, np.ndarray]:
    """Load the UTKFace faces with their age and gender.

    Parameters
    ----------
    path : str, os.PathLike, or a list or tuple of them
        A folder of UTKFace images, or the archive downloaded from Kaggle
        (``.zip``, ``.tar.gz``, ``.tgz`` or ``.tar``). Images may sit in
        nested folders (``crop_part1/``, ``UTKFace/``, ...); the folder or
        archive is searched recursively. Archives are read in place, without
        extracting them to disk. ``~`` is expanded. Several sources are
        loaded in turn and concatenated, each photo once (see Notes).
    image_size : int, default=64
        Side, in pixels, of the square every image is resized to.
    color : {"grayscale", "rgb"}, default="grayscale"
        Decode to one channel or to three.
    return_X_y : bool, default=False
        If True, return ``(images, target)`` instead of a Bunch.
    cache : bool, default=True
        Keep the decoded arrays on disk and reuse them when neither the files
        nor ``image_size`` / ``color`` changed. False neither reads nor writes
        the cache.
    cache_dir : str or os.PathLike, default=None
        Root folder of skface's cache; the arrays go to its ``utkface/``
        subfolder. None picks the ``SKFACE_CACHE_DIR`` environment variable,
        else ``$XDG_CACHE_HOME/skface``, else ``~/.cache/skface``.
    n_jobs : int, default=None
        Number of threads that decode images. None means
        ``min(4, os.cpu_count())``; -1 means all processors.
    max_file_bytes : int or None, default=MAX_FILE_BYTES
        Files and archive members larger than this (20 MB by default) are
        skipped without being read, so that a tampered archive cannot
        exhaust memory; a zip member of over 1 MB is also skipped if it
        inflates more than ``MAX_COMPRESSION_RATIO`` (100) times. None lifts
        the size limit (not the ratio).
    verbose : bool, default=True
        Show a progress bar while images are decoded.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        images : ndarray of shape (n_images, image_size, image_size, n_channels)
            The faces, uint8; ``n_channels`` is 1 for grayscale and 3 for rgb.
        target : ndarray of shape (n_images, 2)
            float64 columns ``[age, gender]``: age in years, gender 0 for male
            and 1 for female.
        target_names : list of str
            ``["age", "gender"]``.
        race : ndarray of shape (n_images,)
            int64 race label from the file name (0 White, 1 Black, 2 Asian,
            3 Indian, 4 Others).
        filenames : ndarray of shape (n_images,)
            Path of each image relative to ``path`` (its member name in an
            archive), with ``/`` separators; with several sources, prefixed
            by the source's own name (``utkface-extra/100_0_0_...jpg``).
        skipped : list of (str, str)
            ``(filename, reason)`` for every file that was not loaded.
        DESCR : str
            Description of the data set, including its license.

    (images, target) : tuple
        Returned instead of the Bunch if ``return_X_y`` is True.

    Raises
    ------
    UTKFaceError
        If ``path`` does not exist, is not a folder or a supported archive,
        the archive is damaged, or it holds no usable UTKFace image.

    Warns
    -----
    SkippedFilesWarning
        Once per call if any file was skipped, with the count of each reason.
    CacheWarning
        If the cache file was damaged (it is rebuilt) or cannot be written.

    See Also
    --------
    skface.data.imaging.decode_image : How each image is turned into an array.

    Notes
    -----
    UTKFace file names carry the labels:
    ``[age]_[gender]_[race]_[date&time].jpg.chip.jpg`` (a plain ``.jpg``,
    ``.jpeg`` or ``.png`` ending is accepted too). Age is 0 to 116, gender
    0 (male) or 1 (female), race 0 to 4. A file is skipped, never guessed,
    if its name does not have four integer fields, its age is outside
    0-``MAX_AGE`` (120), its gender is not 0 or 1, its name does not end like
    an image, or its content cannot be decoded. Files are read in the order
    of their relative names, so the result does not depend on the file
    system.

    Links are never a way out of the tree, nor a way to load an image
    twice: a link to a folder is not followed (a ``loop -> .`` link would
    otherwise repeat every image, and the copies would leak across a
    train/test split); a link to a file is read only if the file lies inside
    ``path``. Links in archives, and anything that is not a regular file
    (a device, a FIFO, a socket), are never read. Each of these, and every
    file over ``max_file_bytes``, is listed in ``skipped`` with its reason.

    The same photo is loaded once. Within a source and across sources, a
    file whose name has the same labels and date&time as a file already
    loaded (``crop_part1/`` and ``UTKFace/`` of the Kaggle archive hold the
    same photos under the same names) is skipped as a duplicate. Across
    sources, a face whose pixels are identical or nearly so to a face of an
    earlier source (a correlation of at least ``NEAR_COPY_CORRELATION`` =
    0.995 between their 16x16 greyscale thumbnails) is skipped as a
    near-copy, whatever its labels. Identical pixels under different names
    within one source are kept: crop_part1 holds about 70, with labels that
    disagree, and dropping them would move every face of a documented split.

    The cache lives in ``<cache root>/utkface/`` (see ``cache_dir``). A cache
    file is used only if its key matches: the image size, the colour mode,
    the versions of skface and Pillow, and, for a folder, the name, size and
    modification time (ns) of every file in it; for an archive, its absolute
    path, size and modification time. Adding, removing or touching a file
    therefore rebuilds the cache. Old cache files are never deleted
    automatically; removing the ``utkface/`` folder is always safe.

    UTKFace is provided for non-commercial research purposes only; the
    copyright of the images belongs to their owners. See
    https://susanqq.github.io/UTKFace/.

    Examples
    --------
    >>> from skface.data.utkface import load_utkface
    >>> faces = load_utkface("UTKFace.tar.gz", image_size=64)  # doctest: +SKIP
    >>> faces.images.shape  # doctest: +SKIP
    (23708, 64, 64, 1)
    >>> faces.target[0]  # doctest: +SKIP
    array([100.,   1.])
    >>> X, y = load_utkface("crop_part1/", return_X_y=True)  # doctest: +SKIP
    """
    image_size, color = check_image_params(image_size, color)
    n_jobs = _check_n_jobs(n_jobs)
    max_file_bytes = _check_max_file_bytes(max_file_bytes)
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    if not paths:
        raise UTKFaceError("load_utkface needs at least one UTKFace folder or archive; got an empty list.")
    sources = [_Source.open(os.path.expanduser(item) if isinstance(item, (str, os.PathLike)) else item,
                            max_file_bytes) for item in paths]
    results = [_load_source(source, image_size, color, n_jobs, verbose, cache, cache_dir) for source in sources]
    if len(results) == 1:
        result = results[0]
    else:
        result = _concatenate(results, [_source_label(source, sources) for source in sources])
    result = _drop_duplicates(result, first_of_source=np.cumsum([0] + [len(r["filenames"]) for r in results])[:-1])
    images, target, race, filenames, skipped = (result[k] for k in _CACHE_KEYS)
    skipped = [(str(name), str(reason)) for name, reason in skipped]
    where = ", ".join(str(source.path) for source in sources)
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped):,} of {len(filenames) + len(skipped):,} files in "
            f"{where} ({_summarize(skipped)}); see the 'skipped' field of the "
            "result for each file and reason.",
            SkippedFilesWarning,
            stacklevel=2,
        )
    if return_X_y:
        return images, target
    return Bunch(
        images=images,
        target=target,
        target_names=["age", "gender"],
        race=race,
        filenames=filenames,
        skipped=skipped,
        DESCR=_describe(where, len(filenames), len(skipped), image_size, color),
    )


def _load_source(source: _Source, image_size: int, color: str, n_jobs: int, verbose: bool, cache: bool,
                 cache_dir) -> dict:
    """One source's decoded faces, through the cache when ``cache``."""

    if not cache:
        return _decode_source(source, image_size, color, n_jobs, verbose)
    key = _cache_key(source, image_size, color)
    cache_file = _cache_folder(cache_dir) / f"{image_size}px-{color}-{key[:40]}.npz"
    result = _read_cache(cache_file, source, image_size, color)
    if result is None:
        result = _decode_source(source, image_size, color, n_jobs, verbose)
        _write_cache(cache_file, result)
    return result


def _source_label(source: _Source, sources: list) -> str:
    """The prefix of a source's file names among several: its own name, numbered if two share it."""
    names = [Path(str(other.path)).name for other in sources]
    name = Path(str(source.path)).name
    return name if names.count(name) == 1 else f"{sources.index(source)}-{name}"


def _concatenate(results: list[dict], labels: list[str]) -> dict:
    """Several sources' results as one, each file name prefixed by its source's label."""
    out = {}
    for key in ("images", "target", "race"):
        out[key] = np.concatenate([result[key] for result in results])
    out["filenames"] = np.array([f"{label}/{name}" for label, result in zip(labels, results)
                                 for name in result["filenames"]])
    out["skipped"] = [(f"{label}/{name}", reason) for label, result in zip(labels, results)
                      for name, reason in result["skipped"]]
    return out


def _photo_key(filename: str, age: float, gender: float, race: int) -> tuple:
    """Labels and date&time of a UTKFace file: the same key means the same photo."""
    fields = Path(str(filename)).name.split("_")
    stamp = fields[3].split(".")[0] if len(fields) > 3 else str(filename)
    return int(age), int(gender), int(race), stamp


def _thumbnails(images: np.ndarray) -> np.ndarray:
    """16x16 greyscale thumbnails, centred and scaled to unit norm: their dot product is a correlation."""
    grey = images.astype(np.float32).mean(axis=-1)
    n, height, width = grey.shape
    rows, cols = np.linspace(0, height, 17).astype(int), np.linspace(0, width, 17).astype(int)
    thumbs = np.add.reduceat(np.add.reduceat(grey, rows[:-1], axis=1), cols[:-1], axis=2).reshape(n, -1)
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    return thumbs / np.maximum(np.linalg.norm(thumbs, axis=1, keepdims=True), 1e-6)


def _drop_duplicates(result: dict, first_of_source) -> dict:
    """``result`` without the faces already loaded: same photo key anywhere, near-copies across sources."""
    filenames, target, race = result["filenames"], result["target"], result["race"]
    n = len(filenames)
    source_of = np.searchsorted(np.asarray(first_of_source), np.arange(n), side="right") - 1
    duplicate_of = {}
    seen = {}
    for i in range(n):
        key = _photo_key(filenames[i], target[i, 0], target[i, 1], race[i])
        if key in seen:
            duplicate_of[i] = (seen[key], "duplicate: the same labels and date&time as")
        else:
            seen[key] = i
    if source_of.max(initial=0) > 0:
        thumbs = _thumbnails(result["images"])
        for source in range(1, int(source_of.max()) + 1):
            earlier = np.flatnonzero((source_of < source) & ~np.isin(np.arange(n), list(duplicate_of)))
            rows = np.flatnonzero((source_of == source) & ~np.isin(np.arange(n), list(duplicate_of)))
            for start in range(0, len(rows), 1024):
                chunk = rows[start:start + 1024]
                correlation = thumbs[chunk] @ thumbs[earlier].T
                best = np.argmax(correlation, axis=1)
                for i, j, value in zip(chunk, earlier[best], correlation[np.arange(len(chunk)), best]):
                    if value >= NEAR_COPY_CORRELATION:
                        duplicate_of[int(i)] = (int(j), "near-copy: nearly the same pixels as")
    if not duplicate_of:
        return result
    keep = np.array([i not in duplicate_of for i in range(n)])
    skipped = list(result["skipped"]) + [(str(filenames[i]), f"{reason} {filenames[j]}")
                                         for i, (j, reason) in sorted(duplicate_of.items())]
    return {"images": result["images"][keep], "target": target[keep], "race": race[keep],
            "filenames": filenames[keep], "skipped": skipped}


def _check_n_jobs(n_jobs) -> int:
    cpus = os.cpu_count() or 1
    if n_jobs is None:
        return min(4, cpus)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, Integral) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(
            f"n_jobs must be None, -1 (all processors) or a positive integer, got {n_jobs!r}."
        )
    return cpus if n_jobs == -1 else int(n_jobs)


def _check_max_file_bytes(max_file_bytes) -> int | None:
    if max_file_bytes is None:
        return None
    if (isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, Integral)
            or max_file_bytes < 1):
        raise ValueError(
            f"max_file_bytes must be a positive integer (bytes, e.g. 20_000_000) or None "
            f"for no limit, got {max_file_bytes!r}."
        )
    return int(max_file_bytes)


# --------------------------------------------------------------------------- #
# Where the files come from: a folder, a zip or a tar archive.
# --------------------------------------------------------------------------- #


class _Source:
    """A folder or an archive; yields ``(relative name, fetch)`` for each file.

    ``fetch()`` returns the file's bytes. For a folder it is cheap to call from
    a worker thread; for an archive it must be called at once, in order,
    because archive readers are neither thread-safe nor (for .tar.gz) seekable.
    Where the file is refused unread (a link, a device, too large), ``fetch``
    is the reason, a str.
    """

    def __init__(self, path: str, kind: str, max_file_bytes: int | None = MAX_FILE_BYTES):
        self.path = path
        self.kind = kind
        self.max_file_bytes = max_file_bytes
        self._listing = None
        self._refused = {}  # relative name -> reason, for a folder
        self._targets = {}  # relative name -> real path, for a link to a file inside the folder

    @classmethod
    def open(cls, path, max_file_bytes: int | None = MAX_FILE_BYTES) -> _Source:
        try:
            path = os.fspath(path)
        except TypeError:
            raise UTKFaceError(
                f"path must be a folder or archive path (str or os.PathLike), got "
                f"{type(path).__name__}."
            ) from None
        if os.path.isdir(path):
            return cls(path, "folder", max_file_bytes)
        if not os.path.exists(path):
            raise UTKFaceError(
                f"{path!r} does not exist. Pass the folder of UTKFace images or the "
                "archive downloaded from Kaggle (.zip, .tar.gz, .tgz or .tar)."
            )
        lower = path.lower()
        if lower.endswith(".zip"):
            return cls(path, "zip", max_file_bytes)
        if lower.endswith(_TAR_SUFFIXES):
            return cls(path, "tar", max_file_bytes)
        raise UTKFaceError(
            f"{path!r} is a file, but neither a folder nor an archive ending in .zip, "
            ".tar.gz, .tgz or .tar. Pass the folder of UTKFace images or the archive "
            "downloaded from Kaggle."
        )

    @property
    def fetch_in_worker(self) -> bool:
        return self.kind == "folder"

    def count(self) -> int | None:
        """Number of files, or None where counting would mean reading a whole .tar.gz."""
        if self.kind == "folder":
            return len(self.listing())
        if self.kind == "zip":
            try:
                with zipfile.ZipFile(self.path) as archive:
                    return sum(not info.is_dir() for info in archive.infolist())
            except (zipfile.BadZipFile, OSError):
                return None  # reported when the members are read
        return None

    def listing(self) -> list[tuple[str, int, int]]:
        """Sorted ``(relative name, size, mtime_ns)`` of every entry of a folder but its subfolders.

        Entries refused unread (links, devices, ...) are listed too, with
        size -1, so that adding or removing one changes the cache key.
        """
        if self._listing is None:
            found = []
            self._scan(self.path, "", found, os.path.realpath(self.path))
            self._listing = sorted(found)
        return self._listing

    def _scan(self, folder: str, prefix: str, found: list, root: str) -> None:
        # Links to folders are not followed: following them, even each real
        # folder once, would still load images from outside the tree, and the
        # order in which links are met would decide which name an image gets.
        with os.scandir(folder) as entries:
            for entry in entries:
                name = prefix + entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        self._scan(entry.path, name + "/", found, root)
                        continue
                    if entry.is_symlink():
                        reason = self._check_link(name, entry.path, root)
                        if reason is not None:
                            self._refuse(found, name, reason)
                            continue
                    info = entry.stat()
                except OSError as exc:
                    # A file that vanished or cannot be looked at.
                    self._refuse(found, name, f"{_UNREADABLE}: the file could not be read ({exc}).")
                    continue
                if stat.S_ISREG(info.st_mode):
                    found.append((name, info.st_size, info.st_mtime_ns))
                else:
                    self._refuse(found, name, _not_regular(_file_kind(info.st_mode)))

    def _check_link(self, name: str, link: str, root: str) -> str | None:
        """Why a link is not followed, or None for a link to a file inside the folder."""
        target = os.path.realpath(link)
        if not os.path.exists(target):
            return f"{_LINK}: the link is broken, its target {os.readlink(link)!r} does not exist."
        if os.path.isdir(target):
            return (
                f"{_LINK}: links to folders are not followed, so that no image is loaded "
                f"twice or from outside {self.path!r}; pass the folder it points to, "
                f"{target!r}, on its own."
            )
        try:
            inside = os.path.commonpath([root, target]) == root
        except ValueError:  # on different drives
            inside = False
        if not inside:
            return (
                f"{_LINK}: it points outside {self.path!r}, to {target!r}; copy the file "
                "into the folder to load it."
            )
        self._targets[name] = target
        return None

    def _refuse(self, found: list, name: str, reason: str) -> None:
        found.append((name, -1, 0))
        self._refused[name] = reason

    def entries(self) -> Iterator[tuple[str, Callable[[], bytes] | str]]:
        if self.kind == "folder":
            for name, size, _ in self.listing():
                if name in self._refused:
                    yield name, self._refused[name]
                elif self.max_file_bytes is not None and size > self.max_file_bytes:
                    yield name, _too_large(size, self.max_file_bytes)
                else:
                    path = self._targets.get(name) or os.path.join(self.path, *name.split("/"))
                    yield name, partial(_read_file, path, self.max_file_bytes)
        elif self.kind == "zip":
            yield from self._zip_entries()
        else:
            yield from self._tar_entries()

    def _zip_entries(self):
        try:
            archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UTKFaceError(
                f"{self.path!r} cannot be opened as a zip archive ({exc}); it may be "
                "incomplete or not a zip file. Download it again, or extract it and "
                "pass the folder."
            ) from exc
        with archive:
            members = sorted(
                (info for info in archive.infolist() if not info.is_dir()),
                key=lambda info: info.filename,
            )
            for info in members:
                yield info.filename, self._zip_member(archive, info)

    def _zip_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo):
        """The fetch of a zip member, or the reason it is not read."""
        if stat.S_ISLNK(info.external_attr >> 16):
            return f"{_LINK}: a link in an archive is not followed."
        if self.max_file_bytes is not None and info.file_size > self.max_file_bytes:
            return _too_large(info.file_size, self.max_file_bytes)
        if (info.file_size > _RATIO_FLOOR
                and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)):
            return (
                f"{_TOO_LARGE}: the member inflates from {info.compress_size:,} to "
                f"{info.file_size:,} bytes, over {MAX_COMPRESSION_RATIO} times, which no "
                "JPEG or PNG image does; the archive may have been tampered with."
            )
        return partial(_read_zip_member, archive, info, self.max_file_bytes)

    def _tar_entries(self):
        try:
            archive = tarfile.open(self.path, "r:*")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            # tarfile lists one line per compression it tried; keep the message on one line.
            reason = " ".join(str(exc).split())
            raise UTKFaceError(
                f"{self.path!r} cannot be opened as a tar archive ({reason}); it may be "
                "incomplete or not a tar file. Download it again, or extract it and "
                "pass the folder."
            ) from exc
        n_read = 0
        with archive:
            # Streaming in archive order reads a .tar.gz once; the caller sorts.
            members = iter(archive)
            while True:
                try:
                    member = next(members)
                except StopIteration:
                    return
                except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                    raise UTKFaceError(
                        f"the archive {self.path!r} is damaged after {n_read:,} members "
                        f"were read ({exc}). Download it again, or extract it and pass "
                        "the folder."
                    ) from exc
                n_read += 1
                if member.isdir():
                    continue
                if member.issym() or member.islnk():
                    yield member.name, f"{_LINK}: a link in an archive is not followed."
                elif not member.isfile():
                    yield member.name, _not_regular(_TAR_KINDS.get(member.type, "special file"))
                elif self.max_file_bytes is not None and member.size > self.max_file_bytes:
                    yield member.name, _too_large(member.size, self.max_file_bytes)
                else:
                    yield member.name, partial(_read_tar_member, archive, member)


_TAR_KINDS = {
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
}


def _file_kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def _not_regular(kind: str) -> str:
    return f"{_NOT_REGULAR}: a {kind} is not read."


def _too_large(size: int | None, limit: int) -> str:
    size = "" if size is None else f"{size:,} bytes, "
    return (
        f"{_TOO_LARGE}: {size}more than max_file_bytes={limit:,}; pass a larger "
        "max_file_bytes (or None) to load it."
    )


class _TooLarge(Exception):
    """A file grew past max_file_bytes between its listing and its reading."""


def _read_bounded(file, limit: int | None) -> bytes:
    if limit is None:
        return file.read()
    data = file.read(limit + 1)
    if len(data) > limit:
        raise _TooLarge(_too_large(None, limit))
    return data


def _read_file(path: str, limit: int | None = None) -> bytes:
    with open(path, "rb") as file:
        return _read_bounded(file, limit)


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int | None) -> bytes:
    with archive.open(info) as file:
        return _read_bounded(file, limit)


def _read_tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    with archive.extractfile(member) as file:
        return file.read()


# --------------------------------------------------------------------------- #
# Labels from file names, and decoding.
# --------------------------------------------------------------------------- #


def _parse_name(name: str) -> tuple[int, int, int] | str:
    """``(age, gender, race)`` from a file name, or the reason to skip the file."""
    base = name.rsplit("/", 1)[-1]
    lower = base.lower()
    if not lower.endswith(_IMAGE_SUFFIXES):
        return f"{_NOT_IMAGE}: UTKFace images end in .jpg, .jpeg or .png."
    if base.startswith("._"):
        return f"{_NOT_IMAGE}: a '._' file is macOS metadata, not an image."
    if lower.endswith(_CHIP_SUFFIX):
        stem = base[: -len(_CHIP_SUFFIX)]
    else:
        stem = base.rsplit(".", 1)[0]
    fields = stem.split("_")
    if len(fields) != len(_FIELD_NAMES):
        return (
            f"{_MALFORMED}: expected 4 fields separated by '_' "
            f"([age]_[gender]_[race]_[date&time]), got {len(fields)} in {stem!r}."
        )
    for field_name, field in zip(_FIELD_NAMES, fields):
        if not _DIGITS.fullmatch(field):
            return f"{_MALFORMED}: the {field_name} field {field!r} is not an integer."
    age, gender, race = (int(field) for field in fields[:3])
    if age > MAX_AGE:
        return f"{_BAD_AGE}: age {age} is outside 0-{MAX_AGE} years."
    if gender not in (0, 1):
        return f"{_BAD_GENDER}: gender {gender} is neither 0 (male) nor 1 (female)."
    return age, gender, race


def _decode_job(fetch, image_size: int, color: str) -> np.ndarray | str:
    """Decoded image, or the reason it could not be read."""
    if callable(fetch):
        try:
            fetch = fetch()
        except OSError as exc:
            return f"{_UNREADABLE}: the file could not be read ({exc})."
        except _TooLarge as exc:
            return str(exc)
    try:
        return decode_image(fetch, image_size, color)
    except ImageDecodeError as exc:
        return f"{_UNREADABLE}: {exc}"


def _decode_source(source: _Source, image_size: int, color: str, n_jobs: int, verbose: bool):
    loaded = []  # (name, image, age, gender, race)
    skipped = []  # (name, reason)
    progress = tqdm(
        total=source.count() if verbose else None,
        desc="Decoding UTKFace",
        unit="img",
        disable=not verbose,
    )

    def finish(name, labels, outcome):
        if isinstance(outcome, str):
            skipped.append((name, outcome))
        else:
            loaded.append((name, outcome, *labels))
        progress.update()

    def jobs():
        for name, fetch in source.entries():
            if isinstance(fetch, str):  # refused unread
                finish(name, None, fetch)
                continue
            labels = _parse_name(name)
            if isinstance(labels, str):
                finish(name, labels, labels)
                continue
            if not source.fetch_in_worker:
                try:
                    fetch = fetch()
                except _TooLarge as exc:
                    finish(name, labels, str(exc))
                    continue
                except (OSError, EOFError, zlib.error, zipfile.BadZipFile,
                        tarfile.TarError, NotImplementedError, RuntimeError) as exc:
                    # Zip members may be damaged (CRC), encrypted (RuntimeError)
                    # or use an unsupported compression (NotImplementedError).
                    reason = f"{_UNREADABLE}: the archive member could not be read ({exc})."
                    finish(name, labels, reason)
                    continue
            yield name, labels, fetch

    with progress:
        if n_jobs == 1:
            for name, labels, fetch in jobs():
                finish(name, labels, _decode_job(fetch, image_size, color))
        else:
            # A bounded window of pending jobs keeps memory flat while an
            # archive is streamed faster than its images are decoded.
            window = 8 * n_jobs
            pending = collections.deque()
            with ThreadPoolExecutor(max_workers=n_jobs) as executor:
                for name, labels, fetch in jobs():
                    pending.append(
                        (name, labels, executor.submit(_decode_job, fetch, image_size, color))
                    )
                    if len(pending) >= window:
                        name_, labels_, future = pending.popleft()
                        finish(name_, labels_, future.result())
                while pending:
                    name_, labels_, future = pending.popleft()
                    finish(name_, labels_, future.result())

    loaded.sort(key=lambda row: row[0])
    skipped.sort()
    if not loaded:
        raise UTKFaceError(_nothing_loaded_message(source.path, skipped))
    shape = (len(loaded), image_size, image_size, n_channels(color))
    images = np.empty(shape, dtype=np.uint8)
    for i, row in enumerate(loaded):
        images[i] = row[1]
    return {
        "images": images,
        "target": np.array([(row[2], row[3]) for row in loaded], dtype=np.float64),
        "race": np.array([row[4] for row in loaded], dtype=np.int64),
        "filenames": np.array([row[0] for row in loaded], dtype=str),
        "skipped": skipped,
    }


def _nothing_loaded_message(path: str, skipped: list[tuple[str, str]]) -> str:
    expected = (
        "Expected UTKFace images named "
        f"{_NAMING}, in the folder or archive or any folder below it."
    )
    if not skipped:
        return f"No files found in {path!r}. {expected}"
    examples = "; ".join(f"{name!r}: {reason}" for name, reason in skipped[:3])
    return (
        f"None of the {len(skipped):,} files in {path!r} is a usable UTKFace image "
        f"({_summarize(skipped)}). For example: {examples} {expected}"
    )


def _summarize(skipped: list[tuple[str, str]]) -> str:
    counts = collections.Counter(reason.partition(":")[0] for _, reason in skipped)
    return ", ".join(f"{kind}: {count:,}" for kind, count in counts.most_common())


def _describe(path: str, n_images: int, n_skipped: int, image_size: int, color: str) -> str:
    return f"""\
.. _utkface_dataset:

UTKFace faces with age and gender
---------------------------------

UTKFace is a data set of over 20,000 face images of people aged 0 to 116,
each labelled in its file name with age, gender and race:
[age]_[gender]_[race]_[date&time].jpg.chip.jpg.

**Data Set Characteristics:**

:Source: {path}
:Number of images: {n_images:,} ({n_skipped:,} files skipped, see ``skipped``)
:Image shape: {image_size} x {image_size} x {n_channels(color)} ({color}), uint8
:Targets: age in years (float64); gender, 0 = male, 1 = female
:Also: race, 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others

**License:** UTKFace is provided for non-commercial research purposes only.
The copyright of the images belongs to their original owners. Models trained
on it carry the same restriction.

**Reference:** Zhang, Song and Qi, "Age Progression/Regression by Conditional
Adversarial Autoencoder", CVPR 2017. https://susanqq.github.io/UTKFace/
"""


# --------------------------------------------------------------------------- #
# The on-disk cache.
# --------------------------------------------------------------------------- #


def _cache_folder(cache_dir) -> Path:
    if cache_dir is not None:
        root = Path(cache_dir)
    elif os.environ.get("SKFACE_CACHE_DIR"):
        root = Path(os.environ["SKFACE_CACHE_DIR"])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        # The XDG spec says to ignore an empty or relative XDG_CACHE_HOME.
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
        root = base / "skface"
    return root.expanduser() / "utkface"


def _cache_key(source: _Source, image_size: int, color: str) -> str:
    # The skface and Pillow versions are part of the key because either may
    # change the decoded pixels. Imported here: skface/__init__ may import
    # this module before it defines __version__.
    from .. import __version__

    parts = {
        "format": _CACHE_FORMAT,
        "skface": __version__,
        "pillow": PIL.__version__,
        "image_size": image_size,
        "color": color,
        "max_file_bytes": source.max_file_bytes,
    }
    if source.kind == "folder":
        parts["files"] = source.listing()
    else:
        info = os.stat(source.path)
        parts["archive"] = [os.path.abspath(source.path), info.st_size, info.st_mtime_ns]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


def _read_cache(cache_file: Path, source: _Source, image_size: int, color: str):
    """The cached result, or None if there is none or it cannot be trusted."""
    if not cache_file.exists():
        return None
    try:
        # Opened here, not by np.load, which leaks its handle when the zip is damaged.
        with open(cache_file, "rb") as file:
            data = np.load(file, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                with data:
                    result = {key: data[key] for key in _CACHE_KEYS}
                problem = _cache_problem(result, source, image_size, color)
            else:
                problem = "it holds a single array, not an .npz archive"
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        warnings.warn(
            f"The UTKFace cache file {cache_file} is damaged ({problem}); it is being "
            f"rebuilt from {source.path}.",
            CacheWarning,
            stacklevel=3,
        )
        return None
    result["skipped"] = [tuple(row) for row in result["skipped"].tolist()]
    return result


def _cache_problem(result: dict, source: _Source, image_size: int, color: str) -> str | None:
    """What is wrong with a cached result, or None."""
    target, filenames, skipped = result["target"], result["filenames"], result["skipped"]
    n = len(filenames)
    expected = {
        "images": ((n, image_size, image_size, n_channels(color)), np.uint8),
        "target": ((n, 2), np.float64),
        "race": ((n,), np.int64),
    }
    for key, (shape, dtype) in expected.items():
        array = result[key]
        if array.shape != shape or array.dtype != dtype:
            return (
                f"{key} has shape {array.shape} and dtype {array.dtype}, "
                f"expected {shape} and {np.dtype(dtype)}"
            )
    if filenames.ndim != 1 or filenames.dtype.kind != "U" or n == 0:
        return "the file names are missing or not text"
    if skipped.ndim != 2 or skipped.shape[1] != 2 or (skipped.size and skipped.dtype.kind != "U"):
        return f"skipped has shape {skipped.shape}, expected (m, 2) text"
    ages, genders = target[:, 0], target[:, 1]
    if not (np.all((ages >= 0) & (ages <= MAX_AGE)) and np.all(np.isin(genders, (0, 1)))):
        return "the labels are out of range"
    if source.kind == "folder":
        names = set(filenames.tolist()) | set(skipped[:, 0].tolist())
        if names != {name for name, _, _ in source.listing()}:
            return "its file names do not match the folder"
    return None


def _write_cache(cache_file: Path, result: dict) -> None:
    skipped = np.array(result["skipped"], dtype=str).reshape(-1, 2)
    arrays = {key: result[key] for key in _CACHE_KEYS if key != "skipped"}
    tmp_name = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # Written to a temporary file in the same folder and renamed, so that
        # a reader never sees a half-written cache file.
        with tempfile.NamedTemporaryFile(
            dir=cache_file.parent, prefix=".tmp-", suffix=".npz", delete=False
        ) as tmp:
            tmp_name = tmp.name
            np.savez(tmp, skipped=skipped, **arrays)
        os.replace(tmp_name, cache_file)
    except OSError as exc:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.remove(tmp_name)
        warnings.warn(
            f"Could not write the UTKFace cache to {cache_file} ({exc}); the data are "
            "returned, but the next load will decode the images again. Pass a writable "
            "cache_dir, set SKFACE_CACHE_DIR, or pass cache=False.",
            CacheWarning,
            stacklevel=3,
        )

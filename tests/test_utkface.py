"""Tests of skface.data.utkface.load_utkface, on tiny generated UTKFace folders and archives."""

import io
import os
import re
import tarfile
import warnings
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.utils import Bunch

import skface.data.utkface
from skface.data.imaging import decode_image
from skface.data.utkface import CacheWarning, SkippedFilesWarning, load_utkface
from skface.exceptions import UTKFaceError

# name -> (age, gender, race); one .png and one plain .jpg ending among them.
FACES = {
    "25_0_1_20170116174525125.jpg.chip.jpg": (25, 0, 1),
    "3_1_2_20161219140641417.jpg.chip.jpg": (3, 1, 2),
    "61_1_0_20170120134639935.jpg": (61, 1, 0),
    "80_0_4_20170103182833831.png": (80, 0, 4),
    "0_1_3_20161220144911423.jpeg": (0, 1, 3),
}


def image_bytes(seed, fmt="JPEG", size=24):
    """A small image of random colours, encoded."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def face_bytes(name, seed):
    return image_bytes(seed, "PNG" if name.endswith(".png") else "JPEG")


def write_files(folder, files):
    """Write ``{relative name: bytes}`` below ``folder``."""
    for name, data in files.items():
        target = Path(folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def face_files(names=FACES, start=0):
    return {name: face_bytes(name, start + i) for i, name in enumerate(names)}


def load_quietly(path, **kwargs):
    """Load with the progress bar off and no warning allowed."""
    kwargs.setdefault("verbose", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_utkface(path, **kwargs)


def cache_files(folder):
    return sorted(Path(folder).glob("utkface/*.npz"))


def make_zip(path, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def make_tar(path, files, mode):
    with tarfile.open(path, mode) as archive:
        # Reversed, so that sorting by name is the loader's job.
        for name, data in reversed(list(files.items())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


class DecodeCounter:
    """Stands in for decode_image; counts calls, can refuse to decode."""

    def __init__(self, allow=True):
        self.calls = 0
        self.allow = allow

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if not self.allow:
            raise AssertionError("decode_image was called, the cache should have been used")
        return decode_image(*args, **kwargs)


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    """Point every test's cache at tmp_path, never at the user's real cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SKFACE_CACHE_DIR", str(root))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return root


@pytest.fixture
def faces_dir(tmp_path):
    return write_files(tmp_path / "faces", face_files())


@pytest.fixture
def decode_counter(monkeypatch):
    counter = DecodeCounter()
    monkeypatch.setattr(skface.data.utkface, "decode_image", counter)
    return counter


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #


def test_folder_load_returns_bunch_with_labels_and_pixels(faces_dir):
    data = load_quietly(faces_dir)
    names = sorted(FACES)
    n = len(names)

    assert isinstance(data, Bunch)
    assert data.images.shape == (n, 64, 64, 1)
    assert data.images.dtype == np.uint8
    assert data.target.shape == (n, 2)
    assert data.target.dtype == np.float64
    assert data.target_names == ["age", "gender"]
    assert data.race.shape == (n,)
    assert np.issubdtype(data.race.dtype, np.integer)
    assert data.filenames.tolist() == names
    assert data.skipped == []
    assert data.target.tolist() == [[FACES[m][0], FACES[m][1]] for m in names]
    assert data.race.tolist() == [FACES[m][2] for m in names]
    assert "non-commercial research purposes only" in data.DESCR
    for image, name in zip(data.images, names):
        expected = decode_image((faces_dir / name).read_bytes(), 64, "grayscale")
        np.testing.assert_array_equal(image, expected)


def test_image_size_and_rgb(faces_dir):
    data = load_quietly(faces_dir, image_size=16, color="rgb")
    assert data.images.shape == (len(FACES), 16, 16, 3)


def test_nested_folders_are_searched(tmp_path):
    names = sorted(FACES)
    files = {
        f"crop_part1/{names[0]}": face_bytes(names[0], 0),
        f"UTKFace/{names[1]}": face_bytes(names[1], 1),
        f"utkface_aligned_cropped/UTKFace/{names[2]}": face_bytes(names[2], 2),
        names[3]: face_bytes(names[3], 3),
    }
    data = load_quietly(write_files(tmp_path / "faces", files))
    assert data.filenames.tolist() == sorted(files)
    assert data.target[:, 0].tolist() == [FACES[name.rsplit("/")[-1]][0] for name in sorted(files)]


@pytest.mark.parametrize(
    "archive_name, build",
    [
        ("UTKFace.zip", make_zip),
        ("UTKFace.tar.gz", lambda path, files: make_tar(path, files, "w:gz")),
        ("UTKFace.tgz", lambda path, files: make_tar(path, files, "w:gz")),
        ("UTKFace.tar", lambda path, files: make_tar(path, files, "w")),
    ],
)
def test_archives_give_the_same_arrays_as_the_folder(tmp_path, archive_name, build):
    files = {f"UTKFace/{name}": data for name, data in face_files().items()}
    files["UTKFace/README.txt"] = b"not a face"
    folder = write_files(tmp_path / "faces", files)
    archive = build(tmp_path / archive_name, files)

    with pytest.warns(SkippedFilesWarning):
        from_folder = load_utkface(folder, verbose=False, cache=False)
    with pytest.warns(SkippedFilesWarning):
        from_archive = load_utkface(archive, verbose=False, cache=False)

    for key in ("images", "target", "race", "filenames"):
        np.testing.assert_array_equal(from_archive[key], from_folder[key])
    assert from_archive.skipped == from_folder.skipped


def test_zip_directory_entries_and_macos_metadata(tmp_path):
    name = "25_0_1_20170116174525125.jpg.chip.jpg"
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("UTKFace/", b"")
        out.writestr(f"UTKFace/{name}", image_bytes(0))
        out.writestr(f"__MACOSX/UTKFace/._{name}", b"\x00\x05\x16\x07 resource fork")

    with pytest.warns(SkippedFilesWarning, match="Skipped 1 of 2 files"):
        data = load_utkface(archive, verbose=False)

    assert data.filenames.tolist() == [f"UTKFace/{name}"]
    assert data.skipped == [
        (
            f"__MACOSX/UTKFace/._{name}",
            "not an image file: a '._' file is macOS metadata, not an image.",
        )
    ]


def test_return_X_y(faces_dir):
    data = load_quietly(faces_dir)
    images, target = load_quietly(faces_dir, return_X_y=True)
    np.testing.assert_array_equal(images, data.images)
    np.testing.assert_array_equal(target, data.target)


@pytest.mark.parametrize("n_jobs", [1, 2, -1])
def test_n_jobs_does_not_change_the_result(faces_dir, n_jobs):
    reference = load_quietly(faces_dir, cache=False, n_jobs=1)
    data = load_quietly(faces_dir, cache=False, n_jobs=n_jobs)
    np.testing.assert_array_equal(data.images, reference.images)
    np.testing.assert_array_equal(data.filenames, reference.filenames)


def test_progress_bar_when_verbose(faces_dir, capsys):
    load_utkface(faces_dir, cache=False, verbose=True)
    assert "Decoding UTKFace" in capsys.readouterr().err


def test_progress_bar_silent_when_not_verbose(faces_dir, capsys):
    load_utkface(faces_dir, cache=False, verbose=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- #
# Skipped files
# --------------------------------------------------------------------------- #

GOOD = "30_1_0_20170117145814823.jpg.chip.jpg"
JPEG = image_bytes(7)

SKIP_CASES = [
    pytest.param(
        "61_1_20170109142408075.jpg.chip.jpg",
        JPEG,
        r"malformed file name: expected 4 fields .*got 3 in '61_1_20170109142408075'",
        "malformed file name: 1",
        id="three-fields",
    ),
    pytest.param(
        "25_x_1_20170116174525125.jpg.chip.jpg",
        JPEG,
        r"malformed file name: the gender field 'x' is not an integer",
        "malformed file name: 1",
        id="non-integer-field",
    ),
    pytest.param(
        "README.txt",
        b"UTKFace readme",
        r"not an image file: UTKFace images end in \.jpg, \.jpeg or \.png\.",
        "not an image file: 1",
        id="text-file",
    ),
    pytest.param(
        ".DS_Store",
        b"\x00\x00\x00\x01Bud1",
        r"not an image file",
        "not an image file: 1",
        id="ds-store",
    ),
    pytest.param(
        "40_0_0_20170117145814823.jpg.chip.jpg",
        b"these bytes are no JPEG at all",
        r"unreadable image: the data is not an image in a format Pillow reads",
        "unreadable image: 1",
        id="corrupt-bytes",
    ),
    pytest.param(
        "41_0_0_20170117145814823.jpg.chip.jpg",
        JPEG[: len(JPEG) // 2],
        r"unreadable image: .*(?i:truncated)",
        "unreadable image: 1",
        id="truncated-jpeg",
    ),
    pytest.param(
        "42_0_0_20170117145814823.jpg.chip.jpg",
        b"",
        r"unreadable image: the image is empty \(0 bytes\)",
        "unreadable image: 1",
        id="empty-file",
    ),
    pytest.param(
        "130_0_0_20170117145814823.jpg.chip.jpg",
        JPEG,
        r"age out of range: age 130 is outside 0-120 years",
        "age out of range: 1",
        id="age-130",
    ),
    pytest.param(
        "30_2_0_20170117145814823.jpg.chip.jpg",
        JPEG,
        r"invalid gender: gender 2 is neither 0 \(male\) nor 1 \(female\)",
        "invalid gender: 1",
        id="gender-2",
    ),
]


@pytest.mark.parametrize("name, content, reason, summary", SKIP_CASES)
def test_each_bad_file_is_skipped_with_its_reason(tmp_path, name, content, reason, summary):
    folder = write_files(tmp_path / "faces", {GOOD: image_bytes(1), f"sub/{name}": content})

    expected = rf"Skipped 1 of 2 files in .*faces \({summary}\); see the 'skipped' field"
    with pytest.warns(SkippedFilesWarning, match=expected):
        data = load_utkface(folder, verbose=False)

    assert data.filenames.tolist() == [GOOD]
    [(skipped_name, skipped_reason)] = data.skipped
    assert skipped_name == f"sub/{name}"
    assert re.search(reason, skipped_reason), skipped_reason
    assert skipped_reason.endswith((".", ")")), "a reason is a sentence"


def test_skipped_files_are_counted_by_reason_in_one_warning(tmp_path):
    files = face_files()
    for i, case in enumerate(SKIP_CASES):
        name, content = case.values[:2]
        files[f"bad{i}/{name}"] = content
    folder = write_files(tmp_path / "faces", files)

    with pytest.warns(SkippedFilesWarning) as record:
        data = load_utkface(folder, verbose=False)

    [warning] = [w for w in record if w.category is SkippedFilesWarning]
    message = str(warning.message)
    assert message.startswith(f"Skipped {len(SKIP_CASES)} of {len(files)} files in {folder} (")
    for count in ("unreadable image: 3", "malformed file name: 2", "not an image file: 2",
                  "age out of range: 1", "invalid gender: 1"):
        assert count in message
    assert len(data.skipped) == len(SKIP_CASES)
    assert [name for name, _ in data.skipped] == sorted(name for name, _ in data.skipped)
    assert len(data.filenames) == len(FACES)


def test_skipped_warning_points_at_the_caller(tmp_path):
    folder = write_files(tmp_path / "faces", {GOOD: image_bytes(1), "README.txt": b"x"})
    with pytest.warns(SkippedFilesWarning) as record:
        load_utkface(folder, verbose=False)
    assert record[0].filename == __file__


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


def test_missing_path(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(UTKFaceError, match=r"'.*no-such-folder' does not exist\. Pass the folder"):
        load_utkface(missing)


def test_file_that_is_not_an_archive(tmp_path):
    path = tmp_path / "25_0_1_20170116174525125.jpg.chip.jpg"
    path.write_bytes(image_bytes(0))
    expected = r"is a file, but neither a folder nor an archive ending in \.zip"
    with pytest.raises(UTKFaceError, match=expected):
        load_utkface(path)


def test_path_of_wrong_type():
    with pytest.raises(UTKFaceError, match=r"path must be a folder or archive path .*got int"):
        load_utkface(3)


def test_empty_folder(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    expected = r"No files found in '.*empty'\. Expected UTKFace images named \[age\]_"
    with pytest.raises(UTKFaceError, match=expected):
        load_utkface(tmp_path / "empty", verbose=False)


def test_folder_without_usable_image(tmp_path, cache_root):
    folder = write_files(
        tmp_path / "faces",
        {"README.txt": b"x", "61_1_20170109142408075.jpg.chip.jpg": image_bytes(0)},
    )
    with pytest.raises(
        UTKFaceError,
        match=(
            r"None of the 2 files in '.*faces' is a usable UTKFace image "
            r"\(malformed file name: 1, not an image file: 1\)\. "
            r"For example: '61_1_20170109142408075.jpg.chip.jpg': malformed.*"
            r"Expected UTKFace images named "
            r"\[age\]_\[gender\]_\[race\]_\[date&time\]\.jpg\.chip\.jpg"
        ),
    ):
        load_utkface(folder, verbose=False)
    assert cache_files(cache_root) == []


def test_damaged_zip(tmp_path):
    path = tmp_path / "UTKFace.zip"
    path.write_bytes(b"PK\x03\x04 this download stopped early")
    expected = r"cannot be opened as a zip archive .*Download it again"
    with pytest.raises(UTKFaceError, match=expected):
        load_utkface(path, verbose=False)


def test_damaged_tar_gz(tmp_path):
    path = tmp_path / "UTKFace.tar.gz"
    path.write_bytes(b"\x1f\x8b this is no gzip stream")
    expected = r"cannot be opened as a tar archive \(.*not a gzip file.*\); .*Download it again"
    with pytest.raises(UTKFaceError, match=expected):
        load_utkface(path, verbose=False)


def test_truncated_tar_gz(tmp_path):
    files = face_files() | {f"more/{name}": face_bytes(name, 9) for name in FACES}
    whole = make_tar(tmp_path / "whole.tar.gz", files, "w:gz").read_bytes()
    path = tmp_path / "UTKFace.tar.gz"
    path.write_bytes(whole[: len(whole) // 2])
    expected = r"the archive '.*UTKFace.tar.gz' is damaged after \d+ members were read .*again"
    with pytest.raises(UTKFaceError, match=expected):
        load_utkface(path, verbose=False)


@pytest.mark.parametrize("n_jobs", [0, -2, 1.5, True])
def test_bad_n_jobs(faces_dir, n_jobs):
    expected = r"n_jobs must be None, -1 \(all processors\) or a positive integer, got"
    with pytest.raises(ValueError, match=expected):
        load_utkface(faces_dir, n_jobs=n_jobs)


def test_bad_image_size(faces_dir):
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        load_utkface(faces_dir, image_size=0)


# --------------------------------------------------------------------------- #
# Links, special files and size caps: a tampered tree or archive is refused
# file by file, with each refusal in ``skipped``.
# --------------------------------------------------------------------------- #


def load_skipping(path, **kwargs):
    with pytest.warns(SkippedFilesWarning):
        return load_utkface(path, verbose=False, **kwargs)


def skipped_reason(data, name):
    return dict(data.skipped)[name]


def test_a_loop_link_loads_each_image_once_and_terminates(faces_dir):
    os.symlink(".", faces_dir / "loop")
    os.symlink("..", faces_dir / "up")  # two links would make a followed walk exponential
    data = load_skipping(faces_dir)
    assert sorted(data.filenames) == sorted(FACES)
    assert re.search(r"link not followed: links to folders are not followed, so that no image is loaded "
                     r"twice", skipped_reason(data, "loop"))
    assert {name for name, _ in data.skipped} == {"loop", "up"}


def test_a_link_to_a_file_outside_the_folder_is_skipped(faces_dir, tmp_path):
    outside = tmp_path / "elsewhere" / "33_0_0_20170117145814823.jpg.chip.jpg"
    outside.parent.mkdir()
    outside.write_bytes(image_bytes(3))
    os.symlink(outside, faces_dir / outside.name)
    data = load_skipping(faces_dir)
    assert sorted(data.filenames) == sorted(FACES)
    assert re.search(r"link not followed: it points outside .*faces', to .*elsewhere.*; copy the file "
                     r"into the folder to load it\.", skipped_reason(data, outside.name))


def test_a_link_to_a_file_inside_the_folder_is_read(faces_dir):
    target = next(iter(FACES))
    os.symlink(target, faces_dir / "sub_link_33_0_0_1.jpg")
    os.symlink(target, faces_dir / "33_0_0_20170117145814823.jpg")
    with pytest.warns(SkippedFilesWarning, match="malformed file name: 1"):
        data = load_utkface(faces_dir, verbose=False)
    assert "33_0_0_20170117145814823.jpg" in data.filenames.tolist()


def test_a_broken_link_is_skipped(faces_dir):
    os.symlink("no-such-file.jpg", faces_dir / "33_0_0_20170117145814823.jpg")
    data = load_skipping(faces_dir)
    assert re.search(r"link not followed: the link is broken, its target 'no-such-file.jpg' does not "
                     r"exist\.", skipped_reason(data, "33_0_0_20170117145814823.jpg"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_in_a_folder_is_skipped_unread(faces_dir):
    os.mkfifo(faces_dir / "33_0_0_20170117145814823.jpg")  # reading it would block forever
    data = load_skipping(faces_dir)
    assert skipped_reason(data, "33_0_0_20170117145814823.jpg") == "not a regular file: a FIFO is not read."


def test_links_are_part_of_the_cache_key(faces_dir):
    first = load_utkface(faces_dir, verbose=False)
    os.symlink(".", faces_dir / "loop")
    second = load_skipping(faces_dir)
    assert first.skipped == [] and [name for name, _ in second.skipped] == ["loop"]


def _special_member(name, kind, **fields):
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_tar_devices_fifos_and_links_are_listed_in_skipped(tmp_path, mode):
    path = make_tar(tmp_path / ("faces.tar" + (".gz" if mode == "w:gz" else "")), face_files(), mode)
    extra = [
        _special_member("10_0_0_1.jpg", tarfile.FIFOTYPE),
        _special_member("11_0_0_1.jpg", tarfile.CHRTYPE, devmajor=1, devminor=3),
        _special_member("12_0_0_1.jpg", tarfile.BLKTYPE, devmajor=8, devminor=0),
        _special_member("13_0_0_1.jpg", tarfile.SYMTYPE, linkname="/etc/passwd"),
        _special_member("14_0_0_1.jpg", tarfile.LNKTYPE, linkname=next(iter(FACES))),
    ]
    rewritten = tmp_path / ("again-" + path.name)
    with tarfile.open(path) as source, tarfile.open(rewritten, mode) as archive:
        for member in source:
            archive.addfile(member, source.extractfile(member))
        for member in extra:
            archive.addfile(member)
    data = load_skipping(rewritten)
    assert sorted(data.filenames) == sorted(FACES)
    assert dict(data.skipped) == {
        "10_0_0_1.jpg": "not a regular file: a FIFO is not read.",
        "11_0_0_1.jpg": "not a regular file: a character device is not read.",
        "12_0_0_1.jpg": "not a regular file: a block device is not read.",
        "13_0_0_1.jpg": "link not followed: a link in an archive is not followed.",
        "14_0_0_1.jpg": "link not followed: a link in an archive is not followed.",
    }


def test_an_oversized_zip_member_is_skipped_unread(tmp_path, monkeypatch):
    big = "50_0_0_20170117145814823.jpg"
    path = tmp_path / "faces.zip"
    make_zip(path, face_files())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(big, image_bytes(9) + os.urandom(3_000_000))  # incompressible, 3 MB
    read = []
    monkeypatch.setattr(skface.data.utkface, "_read_zip_member",
                        lambda archive, info, limit: read.append(info.filename) or archive.read(info))
    data = load_skipping(path, max_file_bytes=1_000_000)
    assert sorted(data.filenames) == sorted(FACES) and big not in read
    assert re.search(r"too large: 3,00.,... bytes, more than max_file_bytes=1,000,000; pass a larger "
                     r"max_file_bytes \(or None\) to load it\.", skipped_reason(data, big))
    assert big in load_quietly(path, max_file_bytes=None, cache=False).filenames


def test_a_zip_member_that_inflates_too_much_is_skipped_unread(tmp_path):
    bomb = "50_0_0_20170117145814823.jpg"
    path = tmp_path / "faces.zip"
    make_zip(path, face_files())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(bomb, image_bytes(9) + bytes(4_000_000))  # 4 MB that deflate to a few KB
    data = load_skipping(path)
    assert sorted(data.filenames) == sorted(FACES)
    assert re.search(r"too large: the member inflates from [0-9,]+ to 4,00.,... bytes, over 100 times",
                     skipped_reason(data, bomb))


def test_a_small_compressible_zip_member_keeps_its_own_reason(tmp_path):
    path = make_zip(tmp_path / "faces.zip", face_files())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", b"UTKFace " * 5_000)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("README.txt")
        assert info.file_size > 100 * info.compress_size
    data = load_skipping(path)
    assert skipped_reason(data, "README.txt").startswith("not an image file: ")


@pytest.mark.parametrize("kind", ["folder", "tar"])
def test_an_oversized_file_is_skipped_in_a_folder_and_a_tar(tmp_path, kind):
    big = "50_0_0_20170117145814823.jpg"
    files = {**face_files(), big: image_bytes(9) + bytes(200_000)}
    path = (write_files(tmp_path / "faces", files) if kind == "folder"
            else make_tar(tmp_path / "faces.tar.gz", files, "w:gz"))
    data = load_skipping(path, max_file_bytes=100_000)
    assert sorted(data.filenames) == sorted(FACES)
    assert skipped_reason(data, big).startswith("too large: ")


def test_a_file_that_grew_past_the_cap_after_listing_is_not_read_whole(faces_dir):
    # The listing's size decides first; the read itself stops one byte past the cap.
    path = faces_dir / next(iter(FACES))
    fetch = partial(skface.data.utkface._read_file, str(path), 100)
    reason = skface.data.utkface._decode_job(fetch, 16, "grayscale")
    assert reason == ("too large: more than max_file_bytes=100; pass a larger max_file_bytes (or None) "
                      "to load it.")


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "20MB"])
def test_bad_max_file_bytes(faces_dir, value):
    with pytest.raises(ValueError, match=r"max_file_bytes must be a positive integer \(bytes, e\.g\. "
                                         r"20_000_000\) or None for no limit, got"):
        load_utkface(faces_dir, max_file_bytes=value)


def test_max_file_bytes_is_part_of_the_cache_key(faces_dir, tmp_path):
    big = "50_0_0_20170117145814823.jpg"
    (faces_dir / big).write_bytes(image_bytes(9) + bytes(50_000))
    assert big in load_quietly(faces_dir).filenames
    assert big not in load_skipping(faces_dir, max_file_bytes=10_000).filenames


# --------------------------------------------------------------------------- #
# Cache
# --------------------------------------------------------------------------- #


def test_second_load_is_served_from_the_cache(faces_dir, cache_root, monkeypatch):
    first = load_quietly(faces_dir)
    [cache_file] = cache_files(cache_root)
    assert cache_file.name.startswith("64px-grayscale-")

    monkeypatch.setattr(skface.data.utkface, "decode_image", DecodeCounter(allow=False))
    second = load_quietly(faces_dir)

    for key in ("images", "target", "race", "filenames"):
        np.testing.assert_array_equal(second[key], first[key])
        assert second[key].dtype == first[key].dtype
    assert second.skipped == first.skipped
    assert second.DESCR == first.DESCR


def test_cached_load_warns_about_skipped_files_too(tmp_path, monkeypatch):
    folder = write_files(tmp_path / "faces", {GOOD: image_bytes(1), "README.txt": b"x"})
    with pytest.warns(SkippedFilesWarning, match="Skipped 1 of 2 files"):
        first = load_utkface(folder, verbose=False)
    monkeypatch.setattr(skface.data.utkface, "decode_image", DecodeCounter(allow=False))
    with pytest.warns(SkippedFilesWarning, match="Skipped 1 of 2 files"):
        second = load_utkface(folder, verbose=False)
    assert second.skipped == first.skipped == [
        ("README.txt", "not an image file: UTKFace images end in .jpg, .jpeg or .png.")
    ]
    assert all(type(part) is str for row in second.skipped for part in row)


def test_changed_file_gives_fresh_data(faces_dir, decode_counter):
    first = load_quietly(faces_dir)
    name = sorted(FACES)[0]
    path = faces_dir / name
    stat = path.stat()
    path.write_bytes(image_bytes(1000))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    second = load_quietly(faces_dir)

    assert not np.array_equal(second.images[0], first.images[0])
    np.testing.assert_array_equal(second.images[0], decode_image(path.read_bytes()))
    np.testing.assert_array_equal(second.images[1:], first.images[1:])


def test_touched_file_is_decoded_again(faces_dir, decode_counter):
    load_quietly(faces_dir)
    calls = decode_counter.calls
    path = faces_dir / sorted(FACES)[0]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    load_quietly(faces_dir)
    assert decode_counter.calls == 2 * calls


def test_added_and_removed_files_change_the_result(faces_dir):
    first = load_quietly(faces_dir)
    new = "99_1_1_20170117145814823.jpg.chip.jpg"
    write_files(faces_dir, {f"extra/{new}": image_bytes(50)})
    added = load_quietly(faces_dir)
    assert len(added.filenames) == len(first.filenames) + 1
    assert f"extra/{new}" in added.filenames.tolist()

    (faces_dir / sorted(FACES)[0]).unlink()
    removed = load_quietly(faces_dir)
    assert len(removed.filenames) == len(first.filenames)
    assert sorted(FACES)[0] not in removed.filenames.tolist()


def test_parameters_are_part_of_the_key(faces_dir, cache_root):
    small = load_quietly(faces_dir, image_size=16)
    large = load_quietly(faces_dir, image_size=32)
    rgb = load_quietly(faces_dir, image_size=16, color="rgb")
    assert small.images.shape[1:] == (16, 16, 1)
    assert large.images.shape[1:] == (32, 32, 1)
    assert rgb.images.shape[1:] == (16, 16, 3)
    assert len(cache_files(cache_root)) == 3


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path):
    path.write_bytes(b"this is not a cache file")


def _single_array(path):
    with open(path, "wb") as file:
        np.save(file, np.zeros(3))


def _missing_key(path):
    np.savez(path, images=np.zeros((1, 64, 64, 1), np.uint8))


def _wrong_shape(path):
    with np.load(path) as data:
        arrays = dict(data)
    arrays["images"] = arrays["images"][:, :32]
    np.savez(path, **arrays)


def _other_files(path):
    with np.load(path) as data:
        arrays = dict(data)
    arrays["filenames"] = np.array([f"x{i}" for i in range(len(arrays["filenames"]))])
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "damage", [_truncate, _garbage, _single_array, _missing_key, _wrong_shape, _other_files]
)
def test_damaged_cache_is_rebuilt(faces_dir, cache_root, decode_counter, damage):
    expected = load_quietly(faces_dir)
    [cache_file] = cache_files(cache_root)
    damage(cache_file)

    message = r"The UTKFace cache file .* is damaged \(.*\); it is being rebuilt from"
    with pytest.warns(CacheWarning, match=message):
        rebuilt = load_utkface(faces_dir, verbose=False)

    for key in ("images", "target", "race", "filenames"):
        np.testing.assert_array_equal(rebuilt[key], expected[key])
    # The rebuilt cache file is sound again: the next load decodes nothing.
    decode_counter.allow = False
    np.testing.assert_array_equal(load_quietly(faces_dir).images, expected.images)
    leftovers = [p.name for p in cache_file.parent.iterdir()]
    assert leftovers == [cache_file.name], "no temporary file is left behind"


def test_unwritable_cache_warns_and_returns_the_data(faces_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should be")
    expected = r"Could not write the UTKFace cache to .*pass cache=False"
    with pytest.warns(CacheWarning, match=expected):
        data = load_utkface(faces_dir, cache_dir=blocker, verbose=False)
    assert data.images.shape[0] == len(FACES)


def test_cache_false_neither_reads_nor_writes(faces_dir, cache_root, decode_counter):
    load_quietly(faces_dir, cache=False)
    assert not cache_root.exists()

    load_quietly(faces_dir)  # writes the cache
    calls = decode_counter.calls
    load_quietly(faces_dir, cache=False)
    assert decode_counter.calls == calls + len(FACES)


def test_archive_is_cached_and_a_new_archive_invalidates_it(tmp_path, cache_root, decode_counter):
    archive = make_zip(tmp_path / "UTKFace.zip", face_files())
    first = load_quietly(archive)
    calls = decode_counter.calls
    load_quietly(archive)
    assert decode_counter.calls == calls
    assert len(cache_files(cache_root)) == 1

    make_zip(archive, face_files(start=100))
    os.utime(archive, ns=(0, archive.stat().st_mtime_ns + 10**9))
    second = load_quietly(archive)
    assert decode_counter.calls == 2 * calls
    assert not np.array_equal(second.images, first.images)


def test_cache_dir_argument(faces_dir, tmp_path, cache_root):
    load_quietly(faces_dir, cache_dir=tmp_path / "mine")
    assert len(cache_files(tmp_path / "mine")) == 1
    assert not cache_root.exists()


def test_skface_cache_dir_env(faces_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SKFACE_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_quietly(faces_dir)
    assert len(cache_files(tmp_path / "env-cache")) == 1
    assert not (tmp_path / "xdg").exists()


def test_xdg_cache_home_env(faces_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SKFACE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_quietly(faces_dir)
    assert len(cache_files(tmp_path / "xdg" / "skface")) == 1


def test_home_cache_is_the_fallback(faces_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SKFACE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/paths/are/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_quietly(faces_dir)
    assert len(cache_files(tmp_path / "home" / ".cache" / "skface")) == 1


# ------------------------------------------------------------------ several sources, each photo once (issue 20)


def test_several_sources_load_each_photo_once(tmp_path):
    first = write_files(tmp_path / "crop_part1", face_files())
    extra = {"33_1_0_20170117120000000.jpg.chip.jpg": image_bytes(100),  # new
             "25_0_1_20170116174525125.jpg.chip.jpg": image_bytes(101)}  # the same photo's name as in crop_part1
    # The same pixels as a crop_part1 face, under other labels: a near-copy.
    extra["40_0_0_20170117130000000.jpg.chip.jpg"] = face_bytes("3_1_2_20161219140641417.jpg.chip.jpg", 1)
    second = write_files(tmp_path / "UTKFace", extra)
    with pytest.warns(SkippedFilesWarning, match="2 of 8 files"):
        faces = load_utkface([first, second], image_size=24, verbose=False)
    assert len(faces.target) == len(FACES) + 1
    assert faces.filenames[-1] == "UTKFace/33_1_0_20170117120000000.jpg.chip.jpg"
    assert all(name.startswith("crop_part1/") for name in faces.filenames[:-1])
    reasons = dict(faces.skipped)
    assert reasons["UTKFace/25_0_1_20170116174525125.jpg.chip.jpg"] == (
        "duplicate: the same labels and date&time as crop_part1/25_0_1_20170116174525125.jpg.chip.jpg")
    assert reasons["UTKFace/40_0_0_20170117130000000.jpg.chip.jpg"] == (
        "near-copy: nearly the same pixels as crop_part1/3_1_2_20161219140641417.jpg.chip.jpg")


def test_the_same_photo_in_two_folders_of_one_archive_is_loaded_once(tmp_path):
    """The Kaggle archive holds crop_part1/ and UTKFace/, the first a subset of the second."""
    files = {f"UTKFace/{name}": data for name, data in face_files().items()}
    files.update({f"crop_part1/{name}": data for name, data in list(face_files().items())[:2]})
    make_zip(tmp_path / "utkface-new.zip", files)
    with pytest.warns(SkippedFilesWarning, match="duplicate"):
        faces = load_utkface(tmp_path / "utkface-new.zip", image_size=24, verbose=False)
    assert len(faces.target) == len(FACES)
    assert sum(reason.startswith("duplicate") for _, reason in faces.skipped) == 2


def test_identical_pixels_under_other_names_in_one_source_are_kept(tmp_path):
    """Within one source the labels of such copies disagree, and a documented split must not move."""
    files = face_files()
    files["41_0_0_20170117140000000.jpg.chip.jpg"] = files["25_0_1_20170116174525125.jpg.chip.jpg"]
    faces = load_quietly(write_files(tmp_path / "faces", files), image_size=24)
    assert len(faces.target) == len(FACES) + 1


def test_a_path_with_a_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_files(tmp_path / "faces", face_files())
    assert len(load_quietly("~/faces", image_size=24).target) == len(FACES)
    assert len(load_quietly(["~/faces"], image_size=24).target) == len(FACES)


def test_an_empty_list_of_sources_is_refused():
    with pytest.raises(UTKFaceError, match="at least one UTKFace folder or archive"):
        load_utkface([])


def write_two_sources(folder, *, seed, n_main, n_extra, main_ages=(0, 90), extra_ages=(20, 40)):
    """Two UTKFace folders, ``folder/main`` and ``folder/extra``, of distinct photos with random ages."""
    rng = np.random.default_rng(seed)
    write_files(folder / "main", {f"{rng.integers(*main_ages)}_{i % 2}_{i % 5}_2017011{i % 10}1{i:08d}.jpg.chip.jpg":
                                  image_bytes(i) for i in range(n_main)})
    write_files(folder / "extra", {f"{rng.integers(*extra_ages)}_{i % 2}_0_2017021{i % 10}1{i:08d}.jpg.chip.jpg":
                                   image_bytes(1000 + i) for i in range(n_extra)})


def test_extra_sources_add_training_faces_only(tmp_path):
    from skface.data.sources import balanced_index, train_test_data
    from skface.evaluation import age_band

    write_two_sources(tmp_path, seed=0, n_main=40, n_extra=60)
    kwargs = {"image_size": 16, "color": "grayscale", "verbose": False, "seed": 0}
    alone = train_test_data(str(tmp_path / "main"), **kwargs)
    both = train_test_data(str(tmp_path / "main"), extra_data=[str(tmp_path / "extra")], calibration_split=0.2,
                           **kwargs)
    assert list(both.test_filenames) == list(alone.test_filenames)
    assert np.array_equal(both.X_test, alone.X_test) and np.array_equal(both.race_test, alone.race_test)
    assert len(both.X_train) + len(both.X_calibration) == len(alone.X_train) + 60
    # The main source's calibration faces are those it holds out alone, and the extra source holds out its share:
    # a model fine-tuned on the main source from one trained on both is calibrated on faces neither trained on.
    calibrated_alone = train_test_data(str(tmp_path / "main"), calibration_split=0.2, **kwargs)
    n_main = len(calibrated_alone.X_calibration)
    assert np.array_equal(both.X_calibration[:n_main], calibrated_alone.X_calibration)
    assert np.array_equal(both.X_train[:len(calibrated_alone.X_train)], calibrated_alone.X_train)
    assert len(both.X_calibration) == n_main + int(np.ceil(0.2 * 60))
    assert both.data.extra == [str((tmp_path / "extra").resolve())] and both.data.digest != alone.data.digest
    balanced = train_test_data(str(tmp_path / "main"), extra_data=[str(tmp_path / "extra")],
                               balance_age_bands=True, **kwargs)
    assert len(balanced.X_train) > len(alone.X_train) + 60
    # An under-represented band gets as many rows as its share of the main source's training part would give.
    n_train = len(alone.y_train) + 60  # the training rows before repeats (60 extra faces)
    for band in set(age_band(alone.y_train[:, 0])):
        wanted = np.mean(age_band(alone.y_train[:, 0]) == band) * n_train
        assert np.sum(age_band(balanced.y_train[:, 0]) == band) >= wanted - 1, band
    index = balanced_index(np.array([[5, 0], [30, 0], [31, 1], [32, 0]]), np.array([[5, 0], [30, 1]]))
    assert index.tolist() == [0, 0, 1, 2, 3]


def test_extra_sources_may_only_calibrate_with_the_faces_they_held_out_when_trained_on(tmp_path):
    from skface.data.sources import train_test_data
    from skface.faces import aligned_views

    write_two_sources(tmp_path, seed=1, n_main=40, n_extra=30)
    kwargs = {"image_size": 16, "color": "rgb", "verbose": False, "seed": 0, "calibration_split": 0.2,
              "extra_data": [str(tmp_path / "extra")]}
    trained = train_test_data(str(tmp_path / "main"), **kwargs)
    alone = train_test_data(str(tmp_path / "main"), calibration_split=0.2, image_size=16, color="rgb", verbose=False)
    calibrating = train_test_data(str(tmp_path / "main"), train_on_extra=False, **kwargs)
    # Trained on the main source's faces alone, and calibrated on every face that the first stage held out.
    assert np.array_equal(calibrating.X_train, alone.X_train) and np.array_equal(calibrating.y_train, alone.y_train)
    assert np.array_equal(calibrating.X_calibration, trained.X_calibration)
    assert len(calibrating.X_calibration) == len(alone.X_calibration) + 6
    assert np.array_equal(calibrating.X_test, trained.X_test)
    # Its second views are the main source's only, decoded without the extra source's faces.
    both = train_test_data(str(tmp_path / "main"), train_on_extra=False, second_view=aligned_views, **kwargs)
    assert len(both.X_train) == 2 * len(alone.X_train) and np.array_equal(both.X_train[:len(alone.X_train)],
                                                                          alone.X_train)
    with pytest.raises(ValueError, match="calibration_split=0 holds out none, so extra_data would go unused"):
        train_test_data(str(tmp_path / "main"), **{**kwargs, "calibration_split": 0.0}, train_on_extra=False)


def test_a_child_calibration_split_holds_out_more_children_only(tmp_path):
    from skface.data.sources import CHILD_AGE, train_test_data

    write_two_sources(tmp_path, seed=2, n_main=120, n_extra=60, main_ages=(0, 60), extra_ages=(0, 40))
    kwargs = {"image_size": 16, "color": "grayscale", "verbose": False, "seed": 0, "calibration_split": 0.1,
              "extra_data": [str(tmp_path / "extra")]}
    plain = train_test_data(str(tmp_path / "main"), **kwargs)
    more = train_test_data(str(tmp_path / "main"), child_calibration_split=0.4, **kwargs)

    def rows(images):
        return {image.tobytes() for image in images}

    def children(y):
        return int(np.sum(y[:, 0] < CHILD_AGE))

    assert np.array_equal(more.X_test, plain.X_test)
    # Every face that calibration_split holds out stays held out, and only children join them.
    assert rows(plain.X_calibration) < rows(more.X_calibration)
    added = rows(more.X_calibration) - rows(plain.X_calibration)
    added_y = np.array([y for x, y in zip(more.X_calibration, more.y_calibration) if x.tobytes() in added])
    assert len(added_y) and np.all(added_y[:, 0] < CHILD_AGE)
    assert rows(more.X_train) == rows(plain.X_train) - added
    n_children = children(plain.y_train) + children(plain.y_calibration)
    assert children(more.y_calibration) >= 0.4 * n_children - 2
    # The trained-on extra faces give children too; trained on the main source alone, the same faces calibrate.
    calibrating = train_test_data(str(tmp_path / "main"), child_calibration_split=0.4, train_on_extra=False, **kwargs)
    assert np.array_equal(calibrating.X_calibration, more.X_calibration)
    with pytest.raises(ValueError, match=r"child_calibration_split must be in \[calibration_split, 1\)"):
        train_test_data(str(tmp_path / "main"), child_calibration_split=0.05, **kwargs)
    with pytest.raises(ValueError, match="give a calibration_split too"):
        train_test_data(str(tmp_path / "main"), **{**kwargs, "calibration_split": 0.0}, child_calibration_split=0.2)


def test_extra_sources_need_a_utkface_source():
    from skface.data.sources import train_test_data

    with pytest.raises(ValueError, match="extra_data adds UTKFace faces to UTKFace faces"):
        train_test_data("synthetic", extra_data=["elsewhere"], n_synthetic=20, image_size=8)


def test_a_second_view_doubles_the_training_faces_only():
    from skface.data.sources import train_test_data
    from skface.faces import aligned_views

    kwargs = {"n_synthetic": 40, "image_size": 16, "color": "rgb", "verbose": False, "calibration_split": 0.2}
    plain = train_test_data("synthetic", **kwargs)
    both = train_test_data("synthetic", second_view=aligned_views, **kwargs)
    n = len(plain.X_train)
    assert both.X_train.shape == (2 * n, 16, 16, 3) and np.array_equal(both.X_train[:n], plain.X_train)
    assert np.array_equal(both.y_train, np.concatenate([plain.y_train, plain.y_train]))
    for name in ("X_test", "y_test", "X_calibration", "y_calibration"):
        assert np.array_equal(both[name], plain[name]), name


def test_a_second_view_of_the_wrong_shape_is_refused():
    from skface.data.sources import train_test_data

    def views(images, *, image_size, color, verbose):
        return np.zeros((len(images), image_size + 1, image_size, 3), dtype=np.uint8)

    with pytest.raises(ValueError, match=r"second_view must return uint8 images of shape \(\d+, 16, 16, 3\)"):
        train_test_data("synthetic", n_synthetic=20, image_size=16, color="rgb", verbose=False, second_view=views)

import doctest
import re
import warnings

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression, Ridge

import skface.data.synthetic
from skface.data.synthetic import make_synthetic_faces, write_synthetic_utkface

UTKFACE_NAME = re.compile(r"^(\d+)_([01])_([0-4])_(\d{17})\.jpg\.chip\.jpg$")


@pytest.fixture(scope="module")
def faces():
    """800 grayscale 32x32 faces: 600 to fit on, 200 held out."""
    return make_synthetic_faces(800, image_size=32, random_state=0)


def _labels_from_names(paths):
    """(index, age, gender, race) parsed from each UTKFace file name."""
    rows = []
    for path in paths:
        match = UTKFACE_NAME.match(path.name)
        assert match, f"{path.name!r} is not a UTKFace file name"
        age, gender, race, stamp = match.groups()
        rows.append((int(stamp[8:]), int(age), int(gender), int(race)))
    return np.array(rows)


@pytest.mark.parametrize("color, channels", [("grayscale", 1), ("rgb", 3), ("RGB", 3)])
def test_shapes_and_dtypes(color, channels):
    X, y = make_synthetic_faces(5, image_size=24, color=color, random_state=0)
    assert X.shape == (5, 24, 24, channels)
    assert X.dtype == np.uint8
    assert y.shape == (5, 2)
    assert y.dtype == np.float64


@pytest.mark.parametrize("image_size", [1, 7, 130])
def test_any_image_size(image_size):
    X, _ = make_synthetic_faces(2, image_size=image_size, random_state=0)
    assert X.shape == (2, image_size, image_size, 1)


def test_same_seed_same_faces():
    X1, y1 = make_synthetic_faces(6, image_size=16, color="rgb", random_state=3)
    X2, y2 = make_synthetic_faces(6, image_size=16, color="rgb", random_state=3)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize(
    "make_state", [np.random.RandomState, np.random.default_rng], ids=["RandomState", "Generator"]
)
def test_random_state_objects_are_accepted(make_state):
    X1, y1 = make_synthetic_faces(4, image_size=16, random_state=make_state(5))
    X2, y2 = make_synthetic_faces(4, image_size=16, random_state=make_state(5))
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)


def test_different_seeds_differ():
    X1, y1 = make_synthetic_faces(6, image_size=16, random_state=1)
    X2, y2 = make_synthetic_faces(6, image_size=16, random_state=2)
    assert not np.array_equal(X1, X2)
    assert not np.array_equal(y1, y2)


def test_none_random_state_draws_fresh_faces():
    X1, _ = make_synthetic_faces(3, image_size=16)
    X2, _ = make_synthetic_faces(3, image_size=16)
    assert not np.array_equal(X1, X2)


def test_label_ranges(faces):
    _, y = faces
    age, gender = y[:, 0], y[:, 1]
    assert np.all(age == np.round(age))
    assert age.min() >= 1 and age.max() <= 90
    assert set(np.unique(gender)) == {0.0, 1.0}
    assert set(np.unique(gender[:200])) == {0.0, 1.0}
    assert 0.4 < gender.mean() < 0.6
    first = age[:500]
    assert np.sum(first < 13) >= 10, "children are missing"
    assert np.sum(first > 60) >= 10, "people over 60 are missing"
    # Heavier in 20-40, as in UTKFace.
    assert np.mean((age >= 20) & (age <= 40)) > 0.35


def test_faces_differ_from_each_other(faces):
    X, _ = faces
    assert X.std() > 20
    assert len({x.tobytes() for x in X[:50]}) == 50


def test_age_and_gender_are_learnable(faces):
    """Linear models on 16x16 pixels beat the baselines clearly; a CNN does better."""
    X, y = faces
    pixels = X.astype(float).reshape(len(X), 16, 2, 16, 2).mean(axis=(2, 4)).reshape(len(X), -1)
    pixels /= 255.0
    train, test = slice(0, 600), slice(600, 800)
    age, gender = y[:, 0], y[:, 1]

    ridge = Ridge(alpha=1.0).fit(pixels[train], age[train])
    mae = np.abs(ridge.predict(pixels[test]) - age[test]).mean()
    baseline_mae = np.abs(np.median(age[train]) - age[test]).mean()
    assert mae < 0.75 * baseline_mae, (mae, baseline_mae)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a convergence warning would make the figure moot
        logistic = LogisticRegression(C=1.0, max_iter=5000).fit(pixels[train], gender[train])
    assert logistic.score(pixels[test], gender[test]) > 0.8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples must be a positive integer"),
        ({"n_samples": -3}, "n_samples must be a positive integer"),
        ({"n_samples": 2.5}, "n_samples must be a positive integer"),
        ({"n_samples": True}, "n_samples must be a positive integer"),
        ({"n_samples": "10"}, "n_samples must be a positive integer"),
        ({"image_size": 0}, "image_size must be a positive integer"),
        ({"image_size": 32.0}, "image_size must be a positive integer"),
        ({"color": "bgr"}, "color must be 'grayscale' or 'rgb'"),
        ({"random_state": "seed"}, "random_state must be None, an int"),
    ],
)
def test_bad_params_make(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_faces(**{"n_samples": 2, **kwargs})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples must be a positive integer"),
        ({"n_samples": 10**9}, "n_samples must be below 1,000,000,000"),
        ({"image_size": -1}, "image_size must be a positive integer"),
        ({"overwrite": "yes"}, "overwrite must be True or False"),
        ({"random_state": 1.5}, "random_state must be None, an int"),
    ],
)
def test_bad_params_write(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_synthetic_utkface(tmp_path / "faces", **{"n_samples": 2, **kwargs})
    assert not (tmp_path / "faces").exists()


def test_write_names_files_and_labels(tmp_path):
    folder = tmp_path / "new" / "faces"  # parents are created too
    paths = write_synthetic_utkface(folder, 12, image_size=40, random_state=4)

    assert len(paths) == 12
    assert sorted(paths) == sorted(folder.iterdir())
    rows = _labels_from_names(paths)
    np.testing.assert_array_equal(rows[:, 0], np.arange(12))  # unique, in sample order
    _, y = make_synthetic_faces(12, image_size=40, color="rgb", random_state=4)
    np.testing.assert_array_equal(rows[:, 1:3], y.astype(int))
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (40, 40)


def test_written_faces_match_arrays_up_to_jpeg(tmp_path):
    paths = write_synthetic_utkface(tmp_path, 6, image_size=48, random_state=8)
    X, _ = make_synthetic_faces(6, image_size=48, color="rgb", random_state=8)
    on_disk = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])
    same_face = np.abs(on_disk.astype(int) - X.astype(int)).mean()
    other_face = np.abs(on_disk.astype(int) - np.roll(X, 1, axis=0).astype(int)).mean()
    assert same_face < 6
    assert other_face > 4 * same_face
    assert not np.array_equal(on_disk, X)  # they are JPEG-compressed


def test_default_size_is_utkface_size(tmp_path):
    (path,) = write_synthetic_utkface(tmp_path, 1, random_state=0)
    with Image.open(path) as image:
        assert image.size == (200, 200)


def test_written_folder_loads_with_load_utkface(tmp_path):
    from skface.data.utkface import load_utkface

    paths = write_synthetic_utkface(tmp_path, 10, image_size=32, random_state=6)
    data = load_utkface(tmp_path, image_size=32, cache=False, verbose=False)
    by_name = {path.name: row for path, row in zip(paths, _labels_from_names(paths))}
    expected = np.array([by_name[name][1:3] for name in data.filenames])
    np.testing.assert_array_equal(data.target, expected)
    np.testing.assert_array_equal(data.race, [by_name[name][3] for name in data.filenames])
    assert data.images.shape == (10, 32, 32, 1)


def test_refuses_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not empty; pass an empty or new folder, or overwrite=True"):
        write_synthetic_utkface(tmp_path, 2, image_size=16, random_state=0)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_refuses_a_file_as_folder(tmp_path):
    file = tmp_path / "faces.jpg"
    file.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file; pass the path of a folder"):
        write_synthetic_utkface(file, 2, image_size=16, random_state=0)


def test_overwrite_replaces_only_utkface_files(tmp_path):
    first = write_synthetic_utkface(tmp_path, 5, image_size=16, random_state=0)
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "photo.jpg").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="not empty"):
        write_synthetic_utkface(tmp_path, 3, image_size=16, random_state=1)

    second = write_synthetic_utkface(tmp_path, 3, image_size=16, random_state=1, overwrite=True)

    names = {p.name for p in tmp_path.iterdir()}
    assert names == {p.name for p in second} | {"notes.txt", "photo.jpg"}
    assert len(first) == 5 and len(second) == 3


def test_overwrite_on_missing_or_empty_folder(tmp_path):
    assert len(write_synthetic_utkface(tmp_path / "a", 2, image_size=16, overwrite=True)) == 2
    (tmp_path / "b").mkdir()
    assert len(write_synthetic_utkface(tmp_path / "b", 2, image_size=16)) == 2


def test_docstring_examples():
    result = doctest.testmod(skface.data.synthetic, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0

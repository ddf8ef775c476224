"""Longer end-to-end checks: real training, and the real UTKFace folder where present."""

from pathlib import Path

import numpy as np
import pytest

from skface import AgeGenderCNN, load_utkface, make_synthetic_faces, metrics

UTKFACE_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "utkface-crop_part1"


@pytest.mark.slow
def test_default_estimator_learns_synthetic_faces():
    """The issue's bar: 10 epochs on 2,000 faces, judged on 500 fresh ones."""
    X, y = make_synthetic_faces(2000, random_state=0)
    X_new, y_new = make_synthetic_faces(500, random_state=1)
    model = AgeGenderCNN(epochs=10, random_state=0, verbose=0).fit(X, y)
    y_pred = model.predict(X_new)
    median_guess = np.column_stack([np.full(len(y_new), np.median(y[:, 0])), np.zeros(len(y_new))])
    assert metrics.gender_accuracy(y_new, y_pred) >= 0.9
    assert metrics.age_mae(y_new, y_pred) < 0.5 * metrics.age_mae(y_new, median_guess)


@pytest.mark.skipif(not UTKFACE_DEV.is_dir(), reason="the UTKFace development folder is not here")
def test_real_utkface_folder(tmp_path):
    with pytest.warns(UserWarning, match="malformed file name: 2"):
        faces = load_utkface(UTKFACE_DEV, image_size=32, cache_dir=tmp_path, verbose=False)
    assert faces.images.shape == (7844, 32, 32, 1)
    malformed = sorted(name for name, reason in faces.skipped if reason.startswith("malformed"))
    assert malformed == ["61_1_20170109142408075.jpg.chip.jpg", "61_3_20170109150557335.jpg.chip.jpg"]

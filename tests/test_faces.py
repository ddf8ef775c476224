"""skface.faces: detection, alignment and FaceAligner on a public-domain portrait."""

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

from skface import ImageDecodeError
from skface.faces import (
    CROP_SIZE,
    LANDMARK_NAMES,
    TEMPLATE,
    FaceAligner,
    FaceDetector,
    NoFaceError,
    align_face,
    find_faces,
    load_rgb,
    similarity_transform,
)

ASTRONAUT = Path(__file__).parent / "data" / "astronaut.jpg"


@pytest.fixture(scope="module")
def astronaut():
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut_face(astronaut, detector):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    return faces[0]


def _paste(image, canvas_shape, top, left, fill=90):
    canvas = np.full(canvas_shape + (3,), fill, dtype=np.uint8)
    canvas[top:top + image.shape[0], left:left + image.shape[1]] = image
    return canvas


def test_one_face_on_the_portrait_with_its_landmarks_inside_the_box(astronaut_face):
    x, y, width, height = astronaut_face.box
    assert astronaut_face.confidence > 0.95
    assert 60 < width < 130 and 80 < height < 150
    assert astronaut_face.landmarks.shape == (len(LANDMARK_NAMES), 2)
    points = astronaut_face.landmarks
    assert np.all((points[:, 0] > x) & (points[:, 0] < x + width))
    assert np.all((points[:, 1] > y) & (points[:, 1] < y + height))
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_a_small_face_off_centre_on_a_large_background_is_found_where_it_was_pasted(astronaut, detector,
                                                                                     astronaut_face):
    # The head and shoulders, shrunk so that the face is about 120 pixels tall... of 1024x768.
    region = Image.fromarray(astronaut).crop((100, 0, 356, 256))
    scale = 120 / astronaut_face.box[3]
    small = np.asarray(region.resize((round(256 * scale), round(256 * scale)), Image.Resampling.BILINEAR))
    top, left = 420, 650
    faces = detector.detect(_paste(small, (768, 1024), top, left))
    assert len(faces) == 1
    x, y, width, height = astronaut_face.box
    expected = np.array([left + (x - 100) * scale, top + y * scale, width * scale, height * scale])
    assert np.allclose(faces[0].box, expected, atol=8)


def test_the_portrait_twice_side_by_side_gives_two_faces(astronaut, detector, astronaut_face):
    faces = detector.detect(np.concatenate([astronaut, astronaut], axis=1))
    assert len(faces) == 2
    lefts = sorted(face.box[0] for face in faces)
    assert lefts == pytest.approx([astronaut_face.box[0], astronaut_face.box[0] + 512], abs=4)


def test_a_plain_white_image_has_no_face(detector):
    assert detector.detect(np.full((480, 640, 3), 255, dtype=np.uint8)) == []
    assert detector.detect(np.full((8, 8, 3), 255, dtype=np.uint8)) == []


def test_a_face_turned_by_90_degrees_is_not_found(astronaut, detector):
    """MTCNN was trained on upright faces: an image whose EXIF orientation was
    lost (rotated pixels, no tag) yields no face, so FaceAligner raises or,
    with on_no_face='keep', passes it through whole. Files with an EXIF
    orientation tag are turned upright by load_rgb first."""
    assert detector.detect(np.ascontiguousarray(np.rot90(astronaut))) == []


def test_an_exif_rotated_file_is_turned_upright_before_detection(astronaut, astronaut_face, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, k=1))).save(path, exif=exif, quality=95)
    faces = find_faces(path)
    assert len(faces) == 1
    assert faces[0].box == pytest.approx(astronaut_face.box, abs=6)


def test_the_aligned_crop_of_the_pasted_face_matches_the_aligned_crop_of_the_original(astronaut, detector,
                                                                                       astronaut_face):
    original = align_face(astronaut, astronaut_face.landmarks)
    region = Image.fromarray(astronaut).crop((0, 0, 400, 300))
    small = np.asarray(region.resize((300, 225), Image.Resampling.BILINEAR))
    pasted = _paste(small, (768, 1024), 300, 120)
    face = detector.detect(pasted)[0]
    aligned = align_face(pasted, face.landmarks)
    assert aligned.shape == (CROP_SIZE, CROP_SIZE, 3)
    assert np.abs(aligned.astype(int) - original.astype(int)).mean() < 12


def test_the_aligned_face_lands_on_the_template(astronaut, detector, astronaut_face):
    aligned = align_face(astronaut, astronaut_face.landmarks)
    faces = detector.detect(aligned)
    assert np.abs(faces[0].landmarks - TEMPLATE).max() < 6


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = np.radians(17), 1.7, np.array([12.0, -30.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = TEMPLATE @ rotation.T + shift
    matrix = similarity_transform(TEMPLATE, target)
    assert np.allclose(matrix, np.hstack([rotation, shift[:, None]]))
    with pytest.raises(ValueError, match="corresponding points"):
        similarity_transform(TEMPLATE, TEMPLATE[:3])
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.zeros((5, 2)), TEMPLATE)


def test_aligning_landmarks_already_on_the_template_leaves_a_crop_unchanged():
    crop = np.random.default_rng(0).integers(0, 256, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    # Equal but for rounding: an identity found by SVD is 1 - 1e-16, not 1.
    assert np.abs(align_face(crop, TEMPLATE).astype(int) - crop).max() <= 1


def test_find_faces_returns_every_face_with_its_aligned_crop(astronaut):
    faces = find_faces(Image.fromarray(np.concatenate([astronaut, astronaut], axis=1)))
    assert len(faces) == 2
    assert all(face.crop.shape == (CROP_SIZE, CROP_SIZE, 3) and face.crop.dtype == np.uint8 for face in faces)
    assert np.abs(faces[0].crop.astype(int) - faces[1].crop.astype(int)).mean() < 8


def test_face_aligner_gives_one_crop_per_image_from_every_input_form(astronaut):
    images = [str(ASTRONAUT), ASTRONAUT.read_bytes(), Image.fromarray(astronaut), astronaut]
    crops = np.stack(FaceAligner().fit_transform(images))
    assert crops.shape == (4, CROP_SIZE, CROP_SIZE, 3) and crops.dtype == np.uint8
    assert np.abs(crops.astype(int) - crops[3].astype(int)).mean() < 2


def test_face_aligner_keeps_a_tight_crop_as_it_is(astronaut, astronaut_face):
    tight = align_face(astronaut, astronaut_face.landmarks)
    assert np.array_equal(FaceAligner().transform([tight])[0], tight)
    warped = FaceAligner(tight_crop_tolerance=None).transform([tight])[0]
    assert not np.array_equal(warped, tight)


def test_face_aligner_names_an_image_without_a_face_or_keeps_it_whole(tmp_path):
    path = tmp_path / "white.png"
    Image.new("RGB", (300, 200), "white").save(path)
    with pytest.raises(NoFaceError, match=r"item 1 \('.*white.png'\): no face found .* on_no_face='keep'"):
        FaceAligner().transform([ASTRONAUT, path])
    assert issubclass(NoFaceError, ImageDecodeError)
    (kept,) = FaceAligner(on_no_face="keep").transform([path])
    assert kept.shape == (200, 300, 3) and np.all(kept == 255)  # kept whole, at its own size
    # By default, an image shaped like a tight crop is kept too (the detector misses some real crops),
    # and anything else is an error.
    square = tmp_path / "square.png"
    Image.new("RGB", (180, 184), "white").save(square)
    assert FaceAligner().transform([square])[0].shape == (184, 180, 3)
    with pytest.raises(NoFaceError):
        FaceAligner(on_no_face="raise").transform([square])
    large = tmp_path / "large.png"
    Image.new("RGB", (300, 300), "white").save(large)
    with pytest.raises(NoFaceError, match="no face found in this 300x300 image"):
        FaceAligner().transform([large])


def test_face_aligner_reports_unreadable_items_by_index(tmp_path):
    with pytest.raises(ImageDecodeError, match=r"item 0 .*no such file"):
        FaceAligner().transform([tmp_path / "missing.jpg"])


@pytest.mark.parametrize("params, message", [
    ({"on_no_face": "skip"}, "on_no_face must be one of 'keep_crops', 'raise', 'keep'"),
    ({"tight_crop_tolerance": (0.1, 5)}, "tight_crop_tolerance must be None or three"),
    ({"min_face_size": 20}, "fraction of the image's shorter side"),
    ({"detection_side": 5}, "detection_side must be an integer"),
])
def test_face_aligner_refuses_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        FaceAligner(**params).fit()


def test_detector_refuses_what_is_not_an_rgb_uint8_array(detector):
    with pytest.raises(ValueError, match=r"uint8 array of shape \(h, w, 3\).*load_rgb"):
        detector.detect(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="thresholds must be three probabilities"):
        FaceDetector(thresholds=(0.6, 0.7)).detect(np.zeros((10, 10, 3), dtype=np.uint8))


def test_load_rgb_decodes_at_full_resolution(astronaut):
    assert load_rgb(str(ASTRONAUT)).shape == (512, 512, 3)
    assert load_rgb(astronaut[..., 0]).shape == (512, 512, 3)
    with pytest.raises(ImageDecodeError, match="cannot read an image from a int"):
        load_rgb(3)


def test_face_aligner_clones_and_pickles(astronaut):
    aligner = FaceAligner(min_face_size=0.2, on_no_face="keep")
    assert clone(aligner).get_params() == aligner.get_params()
    restored = pickle.loads(pickle.dumps(aligner))
    assert np.array_equal(restored.transform([astronaut]), aligner.transform([astronaut]))


def test_a_face_whose_landmarks_coincide_is_dropped_not_raised(monkeypatch):
    """Degenerate landmarks cannot be aligned: that face is left out, and an image with no other is a NoFaceError."""
    from skface.faces import Face, FaceDetector

    degenerate = Face(box=(10.0, 10.0, 50.0, 60.0), confidence=0.99, landmarks=np.full((5, 2), 30.0))
    monkeypatch.setattr(FaceDetector, "detect", lambda self, image: [degenerate])
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="no face that can be aligned"):
        FaceAligner().find(image)


def test_min_face_pixels_finds_a_face_smaller_than_min_face_size():
    """A 30 px face in a 1280x960 photo, far under 0.1 of its shorter side (96 px): found only with the floor."""
    from skface.faces import FaceDetector, load_rgb

    image = load_rgb(str(ASTRONAUT))
    x, y, w, h = FaceDetector().detect(image)[0].box
    region = image[int(y - 0.3 * h):int(y + 1.3 * h), int(x - 0.3 * w):int(x + 1.3 * w)]
    scale = 30 / w
    small = np.asarray(Image.fromarray(region).resize((round(region.shape[1] * scale),
                                                       round(region.shape[0] * scale))))
    photo = np.full((960, 1280, 3), 200, dtype=np.uint8)
    photo[400:400 + small.shape[0], 600:600 + small.shape[1]] = small
    assert FaceDetector().detect(photo) == []
    found = FaceDetector(min_face_pixels=24).detect(photo)
    assert len(found) == 1 and abs(found[0].box[0] - 606) < 6 and abs(found[0].box[2] - 30) < 6
    with pytest.raises(ValueError, match="min_face_pixels must be None or an integer of at least 12"):
        FaceDetector(min_face_pixels=4).detect(photo)


def test_aligned_views_undo_a_tilt_that_a_plain_resize_keeps(astronaut):
    from skface import ImagePreprocessor
    from skface.faces import aligned_views

    portrait = Image.fromarray(astronaut).crop((100, 0, 356, 256)).resize((CROP_SIZE, CROP_SIZE))
    tilted = portrait.rotate(25, resample=Image.Resampling.BILINEAR, fillcolor=(90, 90, 90))
    blank = np.full((CROP_SIZE, CROP_SIZE, 3), 200, dtype=np.uint8)
    images = [np.asarray(portrait), np.asarray(tilted), blank]
    views = aligned_views(images, image_size=32, color="rgb")
    plain = ImagePreprocessor(image_size=32, color="rgb").transform(images)
    assert views.shape == (3, 32, 32, 3) and views.dtype == np.uint8

    def difference(a, b):
        return np.abs(a[8:24, 8:24].astype(int) - b[8:24, 8:24]).mean()  # the face's centre

    # Warped onto the template, the tilted face looks like the upright one; resized, it does not.
    assert difference(views[0], views[1]) < 0.5 * difference(plain[0], plain[1])
    assert np.array_equal(views[2], plain[2])  # no face: the image as it is

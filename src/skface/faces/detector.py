"""Finding faces and their five landmarks: MTCNN's three networks, compiled and batched.

The networks and their weights are those of the ``mtcnn`` package (MIT licence;
the weights ship inside its wheel, nothing is downloaded). Its own
``MTCNN.detect_faces`` calls the Keras models eagerly, one pyramid scale at a
time, which costs about 230 ms for a 200x200 crop on a two-core CPU. This
module runs the same three stages (PNet proposals over an image pyramid,
RNet refinement, ONet boxes and landmarks) with these changes, each measured
in ``experiments/bench_faces.py``:

- every network call is a ``tf.function`` traced once with free height and
  width, so no image shape ever retraces;
- RNet and ONet see all candidate boxes of an image in one batch, cropped by
  ``tf.image.crop_and_resize`` inside the same compiled call;
- the pyramid starts at the smallest face worth finding, a fraction of the
  image's shorter side (``min_face_size``), instead of at 20 pixels whatever
  the image, which bounds the work whatever the image's size;
- large images are searched on a downscaled copy (shorter side at most
  ``detection_side`` pixels), and boxes and landmarks are mapped back to the
  full-resolution image;
- PNet's proposals, RNet's refinement and the non-maximum suppressions
  between them run inside that same call; only ONet's final suppression
  (overlap over the smaller box, which TensorFlow lacks) runs in NumPy.

Measured (AMD EPYC, 2 cores shared, p50 of 20 interleaved rounds): a 200x200
crop 12.5 ms (shipped mtcnn 108 ms), a 640x480 photo with one face 16.5 ms
(238 ms), a 1280x900 photo with six faces 32 ms (582 ms). Thread settings
(intra/inter-op 1 or 2) showed no consistent effect within the machine's noise
and are left to the application, being process-wide.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from PIL import Image

from ..quiet import import_tensorflow_quietly

import_tensorflow_quietly()
import tensorflow as tf  # noqa: E402  (after the quiet import above)

#: Names of the five landmarks, in the order of :attr:`Face.landmarks`. "Left"
#: and "right" are as seen in the image (the left eye is the one nearer x = 0),
#: as in the ``mtcnn`` package.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# PNet looks at 12x12 windows, moved by 2 pixels (its one 2x2 pooling).
_CELL = 12
_STRIDE = 2


@dataclass(frozen=True)
class Face:
    """One face found in an image.

    Attributes
    ----------
    box : tuple of float
        ``(x, y, width, height)`` in the image's pixels, clipped to the image.
    confidence : float
        ONet's face probability, in [0, 1].
    landmarks : ndarray of shape (5, 2)
        ``(x, y)`` of the left eye, right eye, nose, left and right mouth
        corners (:data:`LANDMARK_NAMES`), in the image's pixels; not clipped.
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        """Area of the box in pixels."""
        return self.box[2] * self.box[3]


class FaceDetector:
    """Find every face of an RGB image, with its box, confidence and five landmarks.

    Parameters
    ----------
    min_face_size : float, default=0.1
        Smallest face to look for, as a fraction of the image's shorter side
        (never below 12 pixels, PNet's window). Smaller values find smaller
        faces and cost more time (about the inverse square).
    min_face_pixels : int or None, default=None
        Also look for faces down to this many pixels of the full image when
        ``min_face_size`` of its shorter side is more: the smallest face is
        ``min(min_face_size * shorter side, min_face_pixels)``. For group
        photos, whose faces are small against the photo: 40 finds 97.5% of
        faces of 24-60 px in 640x480 photos, against 47% without, for about
        8 ms more (``experiments/bench_faces.py scenes``). None for no floor.
    detection_side : int or None, default=480
        Images whose shorter side is longer are searched on a copy downscaled
        to this shorter side; boxes and landmarks come back in the full image's
        pixels. ``None`` searches at full resolution.
    scale_factor : float, default=0.709
        Ratio between successive levels of the image pyramid (MTCNN's value).
    thresholds : tuple of float, default=(0.6, 0.7, 0.8)
        Face probabilities that PNet, RNet and ONet candidates must exceed
        (MTCNN's values).

    Examples
    --------
    >>> import numpy as np
    >>> from skface.faces import FaceDetector
    >>> FaceDetector().detect(np.full((100, 100, 3), 255, dtype=np.uint8))
    []
    """

    def __init__(self, min_face_size: float = 0.1, detection_side: int | None = 480,
                 scale_factor: float = 0.709, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
                 min_face_pixels: int | None = None):
        self.min_face_size = min_face_size
        self.min_face_pixels = min_face_pixels
        self.detection_side = detection_side
        self.scale_factor = scale_factor
        self.thresholds = thresholds

    def detect(self, image: np.ndarray) -> list[Face]:
        """Find every face of one image.

        Parameters
        ----------
        image : ndarray of shape (h, w, 3), dtype uint8
            An RGB image (use :func:`skface.faces.load_rgb` for files, bytes
            or PIL images).

        Returns
        -------
        faces : list of Face
            Largest box first.

        Raises
        ------
        ValueError
            If the image is not an (h, w, 3) uint8 array or a parameter is
            out of range.
        """
        _check_params(self)
        image = _check_image(image)
        height, width = image.shape[:2]
        fraction = self.min_face_size
        if self.min_face_pixels is not None:
            fraction = min(fraction, self.min_face_pixels / min(height, width))
        scale = 1.0
        if self.detection_side is not None and min(height, width) > self.detection_side:
            scale = self.detection_side / min(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR,
                                                             reducing_gap=2.0))
        scales = self._scales(image.shape[:2], fraction)
        if not scales:
            return []
        boxes, confidence, landmarks = _networks().detect(
            tf.constant(image), tf.constant(scales, tf.float32),
            tf.constant(self.thresholds, tf.float32))
        boxes = np.concatenate([boxes.numpy(), confidence.numpy()[:, None]], axis=1)
        landmarks = landmarks.numpy()
        keep = _nms(boxes, 0.7, over="min")
        return _to_faces(boxes[keep] / _scale_columns(scale), landmarks[keep] / scale, (height, width))

    def _scales(self, shape, fraction: float) -> list[float]:
        short = min(shape)
        scale = _CELL / max(float(_CELL), fraction * short)
        scales = []
        while short * scale >= _CELL:
            scales.append(scale)
            scale *= self.scale_factor
        return scales


class _Networks:
    """PNet, RNet and ONet with the ``mtcnn`` package's weights, compiled into one call."""

    def __init__(self):
        from mtcnn.network.onet import ONet
        from mtcnn.network.pnet import PNet
        from mtcnn.network.rnet import RNet
        from mtcnn.utils.tensorflow import load_weights

        models = {}
        for name, network in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
            model = network()
            model.build()
            model.set_weights(load_weights(f"{name}.lz4"))
            models[name] = model
        self.detect = _compile(models["pnet"], models["rnet"], models["onet"])


def _compile(pnet, rnet, onet):
    """One ``tf.function`` from uint8 image to ONet's boxes, probabilities and landmarks."""

    def proposals(image, scales, threshold):
        height = tf.cast(tf.shape(image)[0], tf.float32)
        width = tf.cast(tf.shape(image)[1], tf.float32)
        found = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False,
                               element_shape=tf.TensorShape([None, 5]))
        for index in tf.range(tf.shape(scales)[0]):
            scale = scales[index]
            size = tf.cast(tf.math.ceil(tf.stack([height, width]) * scale), tf.int32)
            regression, probability = pnet(tf.image.resize(image[None], tf.maximum(size, _CELL), method="area"))
            where = tf.where(probability[0, :, :, 1] > threshold)
            score = tf.gather_nd(probability[0, :, :, 1], where)
            offsets = tf.gather_nd(regression[0], where)
            corner = tf.cast(tf.reverse(where, [1]), tf.float32) * (_STRIDE / scale)
            side = _CELL / scale
            boxes = tf.concat([corner + offsets[:, :2] * side, corner + side + offsets[:, 2:] * side], axis=1)
            keep = tf.image.non_max_suppression(boxes, score, tf.shape(score)[0], iou_threshold=0.5)
            found = found.write(index, tf.concat([tf.gather(boxes, keep), tf.gather(score, keep)[:, None]], 1))
        boxes = found.concat()
        keep = tf.image.non_max_suppression(boxes[:, :4], boxes[:, 4], tf.shape(boxes)[0], iou_threshold=0.7)
        return square(tf.gather(boxes, keep))

    def square(boxes):
        size = boxes[:, 2:4] - boxes[:, 0:2]
        side = tf.reduce_max(size, axis=1, keepdims=True)
        corner = boxes[:, 0:2] + (size - side) / 2
        return tf.concat([corner, corner + side, boxes[:, 4:]], axis=1)

    def crops(image, boxes, side):
        extent = tf.cast(tf.shape(image)[:2] - 1, tf.float32)
        normalized = tf.stack([boxes[:, 1] / extent[0], boxes[:, 0] / extent[1],
                               boxes[:, 3] / extent[0], boxes[:, 2] / extent[1]], axis=1)
        indices = tf.zeros(tf.shape(boxes)[:1], tf.int32)
        return tf.image.crop_and_resize(image[None], normalized, indices, (side, side))

    def run(model, image, boxes, side):
        # One dummy box keeps the batch non-empty: oneDNN's convolution fails
        # on a batch of zero patches.
        dummy = tf.constant([[0.0, 0.0, side - 1.0, side - 1.0]])
        outputs = model(crops(image, tf.concat([boxes[:, :4], dummy], axis=0), side))
        return [output[:-1] for output in outputs]

    def regress(boxes, offsets):
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1
        return boxes[:, :4] + offsets * tf.concat([size, size], axis=1)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([None], tf.float32),
                                  tf.TensorSpec([3], tf.float32)])
    def detect(image, scales, thresholds):
        image = (tf.cast(image, tf.float32) - 127.5) / 128.0
        boxes = proposals(image, scales, thresholds[0])
        offsets, probability = run(rnet, image, boxes, 24)
        score = probability[:, 1]
        boxes = regress(boxes, offsets)
        keep = tf.where(score > thresholds[1])[:, 0]
        boxes, score = tf.gather(boxes, keep), tf.gather(score, keep)
        keep = tf.image.non_max_suppression(boxes, score, tf.shape(score)[0], iou_threshold=0.7)
        boxes = square(tf.concat([tf.gather(boxes, keep), tf.gather(score, keep)[:, None]], 1))
        offsets, points, probability = run(onet, image, boxes, 48)
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1
        landmarks = tf.stack([boxes[:, 0:1] + size[:, 0:1] * points[:, :5] - 1,
                              boxes[:, 1:2] + size[:, 1:2] * points[:, 5:] - 1], axis=-1)
        boxes = regress(boxes, offsets)
        keep = tf.where(probability[:, 1] > thresholds[2])[:, 0]
        return tf.gather(boxes, keep), tf.gather(probability[:, 1], keep), tf.gather(landmarks, keep)

    return detect


_NETWORKS = None
_NETWORKS_LOCK = threading.Lock()


def _networks() -> _Networks:
    # Loaded once a process: building the models and reading the weights takes
    # about a second, and the compiled functions serve every FaceDetector.
    global _NETWORKS
    with _NETWORKS_LOCK:
        if _NETWORKS is None:
            _NETWORKS = _Networks()
    return _NETWORKS


def _nms(boxes, threshold, over="union") -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    x1, y1, x2, y2, score = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-score, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        inter = (np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1, 0, None)
                 * np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1, 0, None))
        if over == "min":
            overlap = inter / np.minimum(areas[best], areas[rest])
        else:
            overlap = inter / (areas[best] + areas[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=int)


def _scale_columns(scale) -> np.ndarray:
    return np.array([scale, scale, scale, scale, 1.0])


def _to_faces(boxes, landmarks, shape) -> list[Face]:
    height, width = shape
    faces = []
    for (x1, y1, x2, y2, confidence), points in zip(boxes, landmarks):
        x1, x2 = np.clip([x1, x2], 0, width)
        y1, y2 = np.clip([y1, y2], 0, height)
        if x2 <= x1 or y2 <= y1:
            continue
        faces.append(Face(box=(float(x1), float(y1), float(x2 - x1), float(y2 - y1)),
                          confidence=float(confidence), landmarks=points.astype(np.float64)))
    return sorted(faces, key=lambda face: -face.area)


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        described = (f"an array of shape {image.shape}, dtype {image.dtype}" if isinstance(image, np.ndarray)
                     else f"a {type(image).__name__}")
        raise ValueError(
            f"detect() takes one RGB image as a uint8 array of shape (h, w, 3), got {described}; "
            "decode files, bytes or PIL images with skface.faces.load_rgb first."
        )
    return np.ascontiguousarray(image)


def _check_params(detector: FaceDetector) -> None:
    min_face = detector.min_face_size
    if isinstance(min_face, bool) or not isinstance(min_face, Real) or not 0 < min_face <= 1:
        raise ValueError(
            f"min_face_size is a fraction of the image's shorter side in (0, 1], e.g. 0.1, got {min_face!r}."
        )
    floor = detector.min_face_pixels
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, Integral) or floor < _CELL):
        raise ValueError(f"min_face_pixels must be None or an integer of at least {_CELL} pixels (PNet's window), "
                         f"e.g. 40, got {floor!r}.")
    side = detector.detection_side
    if side is not None and (isinstance(side, bool) or not isinstance(side, Integral) or side < _CELL):
        raise ValueError(f"detection_side must be an integer of at least {_CELL} pixels or None, got {side!r}.")
    factor = detector.scale_factor
    if isinstance(factor, bool) or not isinstance(factor, Real) or not 0.1 <= factor < 1:
        raise ValueError(f"scale_factor must be in [0.1, 1), e.g. 0.709, got {factor!r}.")
    thresholds = detector.thresholds
    if (not isinstance(thresholds, (tuple, list)) or len(thresholds) != 3
            or not all(isinstance(t, Real) and 0 <= t < 1 for t in thresholds)):
        raise ValueError(
            f"thresholds must be three probabilities in [0, 1) for PNet, RNet and ONet, e.g. (0.6, 0.7, 0.8), "
            f"got {thresholds!r}."
        )

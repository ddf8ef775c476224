"""Faces in real photos: find every face, align it as the network was trained.

- :class:`FaceDetector`: boxes, confidences and five landmarks (MTCNN's
  networks from the ``mtcnn`` package, compiled and batched).
- :func:`align_face`: warp a face to the geometry of a 200x200 UTKFace crop.
- :class:`FaceAligner`: a scikit-learn transformer from images to the aligned
  crop of each image's most prominent face.
- :func:`find_faces`: every face of one image with its aligned crop.
- :func:`aligned_views`: face crops as the face step gives photos' faces to the network,
  for training on both.
- :func:`load_rgb`: one image decoded at full resolution.
- :func:`draw_faces`: boxes and labels drawn on a photo.

This subpackage imports TensorFlow; ``import skface`` does not import it.
"""

from .aligner import AlignedFace, FaceAligner, NoFaceError, aligned_views, find_faces
from .alignment import CROP_SIZE, TEMPLATE, align_face, similarity_transform
from .decoding import load_rgb
from .detector import LANDMARK_NAMES, Face, FaceDetector
from .drawing import draw_faces

__all__ = [
    "AlignedFace",
    "FaceAligner",
    "NoFaceError",
    "aligned_views",
    "find_faces",
    "CROP_SIZE",
    "Face",
    "FaceDetector",
    "LANDMARK_NAMES",
    "TEMPLATE",
    "align_face",
    "draw_faces",
    "load_rgb",
    "similarity_transform",
]

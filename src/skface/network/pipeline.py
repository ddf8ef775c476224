"""The standard pipeline, ``FaceAligner``, ``ImagePreprocessor`` then ``AgeGenderCNN``: building, training, answering.

Every entry point goes through these: ``skface train`` and the MLflow
recipes build and train the pipeline with :func:`train_pipeline`; the served
model and ``skface predict`` answer with :func:`predict_rows`, one row per
input image with one entry per face found in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from ..data.imaging import pixel_count
from ..data.preprocessing import ImagePreprocessor
from ..exceptions import ImageDecodeError
from .estimator import AgeGenderCNN

#: The fields of one answer, the same for the served model and ``skface predict``: the most prominent
#: face's age, gender and probability of that gender, an error (empty when the image was read and has a
#: face), and every face found with its own answer (see :func:`predict_rows`).
ROW_FIELDS = ("age", "age_low", "age_high", "gender", "gender_probability", "error", "faces")
# Confidence level of the age ranges in every per-face answer.
INTERVAL_LEVEL = 0.8


def make_pipeline(estimator: AgeGenderCNN, *, image_size: int, color: str, faces: bool = True) -> Pipeline:
    """``Pipeline([("faces", FaceAligner()), ("preprocess", ImagePreprocessor(...)), ("model", estimator)])``.

    Parameters
    ----------
    estimator : AgeGenderCNN
        Fitted or not.
    image_size : int
        Side of the square images the estimator reads.
    color : {"grayscale", "rgb"}
        Their colour.
    faces : bool, default=True
        Start with a :class:`skface.faces.FaceAligner`, so that the pipeline
        answers for whole photos (their most prominent face) as well as for
        tight face crops, which it keeps as they are.

    Returns
    -------
    pipeline : Pipeline
    """
    steps = [("preprocess", ImagePreprocessor(image_size=image_size, color=color)), ("model", estimator)]
    if faces:
        from ..faces import FaceAligner

        steps.insert(0, ("faces", FaceAligner()))
    return Pipeline(steps)


def training_data(*, aligned_views: bool = False, **kwargs):
    """The training and test faces of every training command: :func:`skface.data.sources.train_test_data`.

    Parameters
    ----------
    aligned_views : bool, default=False
        Also train on each training face as the face step hands a photo's
        face to the network: ``second_view=``:func:`skface.faces.aligned_views`.
    **kwargs
        The other arguments of ``train_test_data``.

    Returns
    -------
    split : Bunch
        As ``train_test_data`` returns it.
    """
    from ..data.sources import train_test_data
    from ..faces import aligned_views as face_step_view

    return train_test_data(second_view=face_step_view if aligned_views else None, **kwargs)


def train_pipeline(X_train, y_train, params: dict, *, image_size: int, color: str, seed: int,
                   verbose: int = 1, callbacks: list | None = None, calibration: tuple | None = None,
                   init: AgeGenderCNN | None = None) -> tuple[Pipeline, float]:
    """Fit ``AgeGenderCNN(**params)`` on a training split and wrap it in the standard pipeline.

    Parameters
    ----------
    X_train : ndarray of shape (n, image_size, image_size, c)
        Training images, as :class:`ImagePreprocessor` makes them.
    y_train : ndarray of shape (n, 2)
        ``[age, gender]`` per image.
    params : dict
        AgeGenderCNN's hyperparameters.
    image_size, color
        Those of the images, kept in the pipeline's preprocessor.
    seed : int
        ``random_state`` of the estimator.
    verbose : int, default=1
        The estimator's progress bar.
    callbacks : list, optional
        Extra Keras callbacks.
    calibration : (X, y), optional
        Held-out faces that the fitted estimator is conformalized on
        (:meth:`AgeGenderCNN.conformalize`): age ranges and a tempered gender
        probability. None or empty leaves it uncalibrated.
    init : AgeGenderCNN, optional
        A fitted estimator whose network goes on training instead of a new
        one (``warm_start``: fine-tuning), as :func:`initial_estimator`
        loads and checks it; it is trained in place.

    Returns
    -------
    pipeline : Pipeline
        The fitted standard pipeline.
    seconds : float
        Wall-clock time of the fit.
    """
    session = {"random_state": seed, "verbose": verbose, "callbacks": callbacks}
    if init is None:
        estimator = AgeGenderCNN(**params, **session)
    else:
        estimator = init.set_params(**params, **session, warm_start=True)
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    if calibration is not None and len(calibration[0]):
        estimator.conformalize(*calibration)
    return make_pipeline(estimator, image_size=image_size, color=color), time.perf_counter() - start


def held_out_answers(estimator: AgeGenderCNN, X) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(y_pred, proba, intervals)`` of held-out images: the :data:`INTERVAL_LEVEL` age ranges of a calibrated
    estimator, None for the ranges of one that is not. What every evaluation passes to
    :func:`skface.evaluation.evaluate`."""
    if estimator.is_conformalized():
        return estimator.predict_with_interval(X, INTERVAL_LEVEL)
    return (*estimator.predict_with_proba(X), None)


def initial_estimator(saved: Pipeline, params: dict, *, image_size: int, color: str) -> AgeGenderCNN:
    """The fitted estimator of a saved pipeline, checked to fine-tune with ``params`` on ``image_size`` px ``color``.

    Parameters
    ----------
    saved : Pipeline
        A fitted standard pipeline, as :func:`skface.load_pretrained`
        returns it.
    params : dict
        The hyperparameters of the fine-tuning: those that shape the network
        must be those it was built with.
    image_size, color
        Those of the training images.

    Returns
    -------
    estimator : AgeGenderCNN
        The pipeline's estimator, for :func:`train_pipeline`'s ``init``.

    Raises
    ------
    ValueError
        The model reads other images, or ``params`` shape another network.
    """
    preprocessor, estimator = saved[-2], saved[-1]
    if (preprocessor.image_size, preprocessor.color) != (image_size, color):
        raise ValueError(
            f"the model reads {preprocessor.image_size} px {preprocessor.color} images, not {image_size} px "
            f"{color}; train with its image size and colour."
        )
    trial = clone(estimator).set_params(**params)
    trial.model_, trial.input_shape_ = estimator.model_, estimator.input_shape_
    trial._check_warm_start(estimator.input_shape_)
    return estimator


def predict_rows(pipeline: Pipeline, items: Sequence, *, read: Callable | None = None, batch_size: int = 256,
                 crops: bool = False, max_items: int | None = None, max_total_pixels: int | None = None) -> list[dict]:
    """One answer per item, with one entry per face; an item that cannot be read gets an error, not the batch.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline whose last step is an :class:`AgeGenderCNN`,
        optionally starting with a :class:`skface.faces.FaceAligner` (which
        finds every face), and whose other steps turn one image into one
        network input (the standard pipeline's :class:`ImagePreprocessor`).
    items : sequence
        File paths, encoded bytes, PIL images or arrays; or whatever ``read``
        turns into one of those.
    read : callable, optional
        Applied to each item first (the served model decodes base64 text);
        an :class:`ImageDecodeError` it raises becomes that row's error.
    batch_size : int, default=256
        Items decoded and predicted at a time: bounds the memory of a long
        sequence.
    crops : bool, default=False
        The items are tight face crops already: skip the face step and
        answer each image as a whole.
    max_items : int, optional
        Answer at most this many items; each one after them gets an error
        saying so, and is not read. None answers all.
    max_total_pixels : int, optional
        Decode at most this many pixels in all: the items are read in turn,
        and one whose pixels (from its header) would take the total over this
        gets an error saying so, and is not decoded. None sets no budget.
        With ``max_items``, this bounds the work of one call, as the served
        model does per request.

    Returns
    -------
    rows : list of dict
        One per item, with :data:`ROW_FIELDS`. ``faces`` lists every face
        found, largest first, each with ``box`` (``[x, y, width, height]`` in
        the image's pixels; None when the image was taken whole),
        ``confidence`` (the detector's; None likewise), ``age`` (years),
        ``age_low`` and ``age_high`` (the range that holds the true age with
        probability :data:`INTERVAL_LEVEL`, 0.8; None when the model was not
        calibrated, see :meth:`AgeGenderCNN.conformalize`), ``gender``
        (``"male"`` or ``"female"``) and ``gender_probability`` (the
        probability of that gender). The row's own answer fields are the
        first face's. ``error`` says why an item has no answer (unreadable,
        no face found, or over a limit), and then the predictions are None
        and ``faces`` is empty.
    """
    aligner, preprocess, model = _split(pipeline)
    rows = []
    pixels_left = max_total_pixels
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        answers = [dict.fromkeys(ROW_FIELDS) | {"error": "", "faces": []} for _ in chunk]
        images = []
        for index, (row, item) in enumerate(zip(answers, chunk), start=start):
            if max_items is not None and index >= max_items:
                row["error"] = (f"not answered: at most {max_items:,} images are answered at a time, and this is "
                                f"image {index + 1:,} of {len(items):,}; send it again on its own or in a smaller "
                                "batch.")
                continue
            try:
                item = read(item) if read is not None else item
                if pixels_left is not None:
                    pixels = pixel_count(item)
                    if pixels > pixels_left:
                        row["error"] = (
                            f"not answered: its {pixels:,} pixels are over the {max_total_pixels:,} decoded at most "
                            "at a time; downscale it." if pixels > max_total_pixels else
                            f"not answered: its {pixels:,} pixels are over the {pixels_left:,} left of the "
                            f"{max_total_pixels:,} decoded at most at a time; send it again on its own or in a "
                            "smaller batch.")
                        continue
                    pixels_left -= pixels
                found = ([(None, None, item)] if aligner is None or crops
                         else [(face.box, face.confidence, face.crop) for face in aligner.find(item)])
                inputs = _network_inputs(preprocess, [image for _, _, image in found])
            except ImageDecodeError as exc:
                # The preprocessor names the item's index in its one-item batch; the row is the item.
                row["error"] = str(exc.__cause__ if isinstance(exc.__cause__, ImageDecodeError) else exc)
                continue
            row["faces"] = [{"box": None if box is None else [round(float(v), 1) for v in box],
                             "confidence": None if confidence is None else round(float(confidence), 4)}
                            for box, confidence, _ in found]
            images.extend(inputs)
        if images:
            answered = iter(_answers(model, np.stack(images)))
            for row in answers:
                for face in row["faces"]:
                    face.update(next(answered))
                if row["faces"]:
                    row.update({key: row["faces"][0][key] for key in ROW_FIELDS if key not in ("error", "faces")})
        rows.extend(answers)
    return rows


def predict_faces(pipeline: Pipeline, image) -> list[dict]:
    """Every face of one image, with all there is to know about it.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline that starts with a :class:`skface.faces.FaceAligner`
        and ends with an :class:`AgeGenderCNN`, such as
        :func:`skface.load_pretrained`'s.
    image : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        One image in any form that :class:`skface.ImagePreprocessor` takes.

    Returns
    -------
    faces : list of dict
        Largest first, each with ``box`` (``(x, y, width, height)`` in the
        image's pixels), ``confidence`` (the detector's), ``landmarks`` (an
        array of shape (5, 2): eyes, nose and mouth corners, see
        :data:`skface.faces.LANDMARK_NAMES`), ``crop`` (what the network saw,
        an RGB array), ``age`` (years), ``age_low`` and ``age_high`` (as in
        :func:`predict_rows`), ``gender`` (``"male"`` or ``"female"``) and
        ``gender_probability`` (of that gender). An image
        that the aligner keeps although it found no face (a tight crop) is
        one face whose box is the whole image, with ``confidence`` and
        ``landmarks`` None.

    Raises
    ------
    ImageDecodeError
        If the image cannot be read; :class:`skface.faces.NoFaceError` if it
        has no face and is not taken for a tight crop.

    Examples
    --------
    >>> from skface import load_pretrained, predict_faces
    >>> faces = predict_faces(load_pretrained(), "tests/data/astronaut.jpg")  # doctest: +SKIP
    >>> [(face["box"], round(face["age"]), face["gender"]) for face in faces]  # doctest: +SKIP
    [((181.8, 61.4, 84.3, 109.6), 29, 'female')]
    """
    aligner, preprocess, model = _split(pipeline)
    if aligner is None:
        raise TypeError("predict_faces needs a pipeline that starts with a skface.faces.FaceAligner, such as "
                        "load_pretrained()'s; add one with skface.network.pipeline.make_pipeline(estimator, ...).")
    faces = aligner.find(image)
    answers = _answers(model, np.stack(_network_inputs(preprocess, [face.crop for face in faces])))
    return [{"box": face.box, "confidence": face.confidence, "landmarks": face.landmarks, "crop": face.crop, **answer}
            for face, answer in zip(faces, answers)]


def _answers(model, images: np.ndarray) -> list[dict]:
    """Each face's answer: age, its :data:`INTERVAL_LEVEL` range (None without a calibration), gender as a word,
    and the probability of that gender."""
    if model.is_conformalized():
        y_pred, proba, intervals = model.predict_with_interval(images, INTERVAL_LEVEL)
    else:
        (y_pred, proba), intervals = model.predict_with_proba(images), np.full((len(images), 2), np.nan)
    answers = []
    for (age, gender), p_female, (low, high) in zip(y_pred, proba[:, 1], intervals):
        is_female = gender == 1
        answers.append({"age": float(age),
                        "age_low": None if np.isnan(low) else float(low),
                        "age_high": None if np.isnan(high) else float(high),
                        "gender": "female" if is_female else "male",
                        "gender_probability": float(p_female if is_female else 1.0 - p_female)})
    return answers


def _split(pipeline: Pipeline):
    """``(face aligner or None, the steps that make the network's input, the estimator)``."""
    from ..faces import FaceAligner

    aligner = pipeline[0] if isinstance(pipeline[0], FaceAligner) else None
    return aligner, (pipeline[1:-1] if aligner is not None else pipeline[:-1]), pipeline[-1]


def _network_inputs(preprocess: Pipeline, images: list) -> list[np.ndarray]:
    """Each image as the network's input, one at a time so that an error names the image, not a batch."""
    return [preprocess.transform([image])[0] for image in images]

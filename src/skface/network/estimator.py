"""``AgeGenderCNN``: the two-output Keras network as a scikit-learn estimator."""

from __future__ import annotations

import inspect
import os
import tempfile
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ..exceptions import NotFittedEstimatorError
from ..metrics import combined_score
from ..quiet import import_tensorflow_quietly
from .architecture import (
    AGE_HEADS,
    ARCHITECTURES,
    PRECISIONS,
    age_distribution,
    build_model,
)
from .calibration import age_interval, conformity_scores, fit_temperature, half_widths, temper
from .inference import predict_outputs, zoom_factors
from .training import LR_SCHEDULES, compile_for_training

_TARGET_COLUMNS = ("age", "gender")
# Fitted by conformalize, and dropped by fit.
_CALIBRATION_ATTRIBUTES = ("age_conformity_scores_", "gender_temperature_")


class AgeGenderCNN(BaseEstimator):
    """Predict age (years) and gender from face images with one two-output CNN.

    The network is the project's seed: one convolution + max-pooling block
    per entry of ``filters``, a flatten, and one dense branch with dropout
    per head. The ``gender`` head is a sigmoid trained with binary
    cross-entropy; the ``age`` head is a ReLU (ages are never negative)
    trained with mean absolute error; the optimiser is Adam.

    Parameters
    ----------
    architecture : {"seed", "vgg_bn"}, default="seed"
        ``"seed"``: the seed's network (convolution + pooling blocks, flatten,
        dense branches). ``"vgg_bn"``: two convolutions with batch
        normalisation per block and global average pooling.
    filters : tuple of int, default=(32, 64, 128, 256)
        Filters of each convolution block; its length is the number of blocks.
    kernel_size : int, default=3
        Side of the square convolution kernels.
    dense_units : int, default=256
        Units of the dense layer in each head's branch.
    bottleneck : int, default=0
        With ``architecture="seed"``, a 1x1 convolution (ReLU) to this many
        channels before the flatten: the spatial layout stays, the dense
        layers and the saved model shrink several times. 0 for none.
    dropout : float, default=0.3
        Dropout rate after each dense layer, in [0, 1).
    learning_rate : float, default=1e-3
        Adam's learning rate (the peak of a cosine schedule).
    lr_schedule : {"constant", "cosine"}, default="constant"
        Keep the learning rate, or decay it to zero over the epochs.
    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW); 0 uses Adam.
    augment : bool, default=False
        Random flips, shifts, rotations, zoom and contrast while training.
    age_head : {"regression", "dex"}, default="regression"
        One ReLU unit, or the expected value of a softmax over ages 0-120.
    label_smoothing : float, default=0.0
        Label smoothing of the gender loss, in [0, 0.5).
    precision : {"float32", "mixed_bfloat16"}, default="float32"
        Compute type of the network's trunk. ``"mixed_bfloat16"`` trains
        about 4x faster on CPUs with AMX and about 2x with AVX-512 BF16
        alone; the heads stay float32.
    flip_tta : bool, default=False
        Average each prediction with that of the mirrored image.
    zoom_tta : tuple of float, default=()
        Also average with views of the image zoomed by these factors about
        its centre (above 1 enlarges the face, below 1 shrinks it), each
        mirrored too with ``flip_tta``. All views of an image go through the
        network in one batch.
    epochs : int, default=10
        Maximum number of passes over the training data.
    batch_size : int, default=32
        Images per gradient step. Predictions go through the network up to
        64 images at a time (with all their test-time views; fewer when
        these would exceed 2.5 million pixels), whatever this is.
    validation_split : float, default=0.1
        Share of the training data held out, after a shuffle, to report
        validation metrics and drive early stopping; 0 disables it.
    age_loss_weight : float, default=1.0
        Weight of the age loss (MAE in years) in the total loss.
    gender_loss_weight : float, default=1.0
        Weight of the gender loss (binary cross-entropy) in the total loss.
    early_stopping : int or None, default=None
        Stop when the validation loss (the training loss without a
        validation split) has not improved for this many epochs, and restore
        the best weights. ``None`` trains for all ``epochs``.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation, dropout, shuffling and validation
        split. With an int, two fits on the same machine give the same
        predictions. Setting it seeds Python's, NumPy's and TensorFlow's
        global generators, as ``keras.utils.set_random_seed`` does.
    verbose : int, default=1
        0 is silent; 1 shows a progress bar over epochs with the metrics.
    callbacks : list of keras.callbacks.Callback or None, default=None
        Extra Keras callbacks for ``fit``, such as
        :class:`skface.tracking.callbacks.MlflowMetricsCallback` to log each epoch.
    warm_start : bool, default=False
        When fitted already, ``fit`` goes on training the fitted network
        (for ``epochs`` more, from ``learning_rate`` with a fresh optimizer)
        instead of building a new one: fine-tuning, for example the
        pretrained model on your own faces. The images must have the
        network's shape, and the parameters that shape the network
        (``architecture``, ``filters``, ...) must be those it was built with.

    Attributes
    ----------
    model_ : keras.Model
        The fitted network, with outputs ``age`` and ``gender``.
    history_ : dict of str to list of float
        Per-epoch training (and ``val_``) losses and metrics.
    input_shape_ : tuple of int
        ``(height, width, channels)`` of the training images.
    n_features_in_ : int
        Size of the second axis of the training input, as scikit-learn
        records it (the image height for a batch of images).
    n_epochs_ : int
        Epochs actually trained (fewer than ``epochs`` after early stopping).
    age_conformity_scores_ : dict of str to ndarray
        Sorted normalised age residuals of the calibration faces, of all
        (``"all"``) and per band of predicted age; only after
        :meth:`conformalize`, which :meth:`predict_interval` needs.
    gender_temperature_ : float
        Temperature of the gender probability; only after
        :meth:`conformalize` (1 means untouched).

    See Also
    --------
    skface.ImagePreprocessor : turns files, bytes or arrays into the image
        batches that this estimator reads.

    Notes
    -----
    ``X`` is a batch of images ``(n, h, w, c)`` on the 0-255 scale; a 3-D
    batch ``(n, h, w)`` is read as grayscale, and a 2-D ``(n, d)`` table as
    one-row grayscale images ``(n, 1, d, 1)``. ``y`` is ``(n, 2)`` with
    columns ``[age, gender]``, gender 0 = male and 1 = female, or a
    DataFrame with columns ``age`` and ``gender``.

    Examples
    --------
    >>> from skface import AgeGenderCNN, make_synthetic_faces
    >>> X, y = make_synthetic_faces(200, image_size=32, random_state=0)
    >>> est = AgeGenderCNN(filters=(8, 16), dense_units=32, epochs=2, verbose=0, random_state=0)
    >>> est.fit(X, y).predict(X[:3]).shape
    (3, 2)
    """

    # Each choice comes from the module that gives it meaning; the command line derives its choices from here.
    _parameter_constraints: ClassVar[dict] = {
        "architecture": [StrOptions(set(ARCHITECTURES))],
        "filters": ["array-like"],
        "kernel_size": [Interval(Integral, 1, None, closed="left")],
        "dense_units": [Interval(Integral, 1, None, closed="left")],
        "bottleneck": [Interval(Integral, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [StrOptions(set(LR_SCHEDULES))],
        "weight_decay": [Interval(Real, 0, 1, closed="left")],
        "augment": ["boolean"],
        "age_head": [StrOptions(set(AGE_HEADS))],
        "label_smoothing": [Interval(Real, 0, 0.5, closed="left")],
        "precision": [StrOptions(set(PRECISIONS))],
        "flip_tta": ["boolean"],
        "zoom_tta": ["array-like", None],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "validation_split": [Interval(Real, 0, 1, closed="left")],
        "age_loss_weight": [Interval(Real, 0, None, closed="left")],
        "gender_loss_weight": [Interval(Real, 0, None, closed="left")],
        "early_stopping": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, tuple, None],
        "warm_start": ["boolean"],
    }

    def __init__(
        self,
        architecture: str = "seed",
        filters: tuple[int, ...] = (32, 64, 128, 256),
        kernel_size: int = 3,
        dense_units: int = 256,
        bottleneck: int = 0,
        dropout: float = 0.3,
        learning_rate: float = 1e-3,
        lr_schedule: str = "constant",
        weight_decay: float = 0.0,
        augment: bool = False,
        age_head: str = "regression",
        label_smoothing: float = 0.0,
        precision: str = "float32",
        flip_tta: bool = False,
        zoom_tta: tuple[float, ...] = (),
        epochs: int = 10,
        batch_size: int = 32,
        validation_split: float = 0.1,
        age_loss_weight: float = 1.0,
        gender_loss_weight: float = 1.0,
        early_stopping: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 1,
        callbacks: list | None = None,
        warm_start: bool = False,
    ):
        self.architecture = architecture
        self.filters = filters
        self.kernel_size = kernel_size
        self.dense_units = dense_units
        self.bottleneck = bottleneck
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.augment = augment
        self.age_head = age_head
        self.label_smoothing = label_smoothing
        self.precision = precision
        self.flip_tta = flip_tta
        self.zoom_tta = zoom_tta
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_split = validation_split
        self.age_loss_weight = age_loss_weight
        self.gender_loss_weight = gender_loss_weight
        self.early_stopping = early_stopping
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.warm_start = warm_start

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the network on images ``X`` and targets ``y``.

        Parameters
        ----------
        X : array-like of shape (n, h, w, c), (n, h, w) or (n, d)
            Images on the 0-255 scale (see Notes).
        y : array-like of shape (n, 2) or DataFrame
            ``[age, gender]`` per image: age in years (>= 0), gender 0 (male)
            or 1 (female). A DataFrame needs columns ``age`` and ``gender``.

        Returns
        -------
        self : AgeGenderCNN
        """
        self._check_params_beyond_constraints()
        warm = self.warm_start and hasattr(self, "model_")
        if warm:
            self._check_warm_start(
                _as_image_batch(check_array(X, allow_nd=True, dtype=None, ensure_all_finite=False)).shape[1:])
        for name in _CALIBRATION_ATTRIBUTES:  # a new network needs a new calibration
            self.__dict__.pop(name, None)
        X, age, gender = self._validate_training_data(X, y)
        import_tensorflow_quietly()
        seed = self._seed_everything()
        train, val = self._split(len(X), gender, seed)
        decay_steps = self.epochs * int(np.ceil(len(train) / self.batch_size))
        if warm:
            params = self.get_params(deep=False)
            self.model_ = compile_for_training(self.model_, **_keywords_for(compile_for_training, params),
                                               decay_steps=decay_steps)
        else:
            self._initialize_network(X.shape[1:], initial_age=float(np.median(age[train])), decay_steps=decay_steps)
        callbacks = self._initialize_callbacks(monitor="val_loss" if len(val) else "loss")
        train_data, validation_data = self._get_datasets(X, {"age": age, "gender": gender}, train, val, seed)
        history = self.model_.fit(
            train_data,
            validation_data=validation_data,
            epochs=self.epochs,
            shuffle=False,  # the dataset reshuffles itself every epoch
            callbacks=callbacks,
            verbose=0,
        )
        self._record_history(history)
        return self

    def _check_params_beyond_constraints(self) -> None:
        """What ``_parameter_constraints`` cannot say: the contents of the tuples, and one combination."""
        filters = self.filters
        if len(filters) == 0 or not all(isinstance(f, Integral) and not isinstance(f, bool) and f > 0
                                        for f in filters):
            raise ValueError(f"filters must be a non-empty tuple of positive ints, e.g. (32, 64), got {filters!r}.")
        zoom_factors(self.zoom_tta)
        if self.bottleneck and self.architecture != "seed":
            raise ValueError(f"bottleneck applies to architecture='seed' only (the {self.architecture!r} network "
                             "ends in global average pooling); set bottleneck=0 or architecture='seed'.")

    def _check_warm_start(self, shape: tuple[int, ...]) -> None:
        """With ``warm_start``, images of ``shape`` fit the fitted network and the parameters still describe it."""
        if tuple(shape) != tuple(self.input_shape_):
            raise ValueError(
                f"warm_start=True goes on training the fitted network, whose images are {self.input_shape_} "
                f"(height, width, channels); got images of {shape}. Resize them as the network was trained "
                "(its pipeline's ImagePreprocessor does), or set warm_start=False to train a new network."
            )
        params = self.get_params(deep=False)
        fresh = build_model(self.input_shape_, **_keywords_for(build_model, params))
        built = [(layer.__class__.__name__, [tuple(w.shape) for w in layer.weights]) for layer in fresh.layers]
        fitted = [(layer.__class__.__name__, [tuple(w.shape) for w in layer.weights]) for layer in self.model_.layers]
        if built != fitted:
            raise ValueError(
                "warm_start=True goes on training the fitted network, but the parameters that shape it "
                "(architecture, filters, kernel_size, dense_units, bottleneck, augment, age_head) describe another "
                "one; set them back to those it was built with (a loaded model's get_params() has them), or set "
                "warm_start=False to train a new network."
            )

    def _validate_training_data(self, X, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Images ``(n, h, w, c)`` as float32 (``n_features_in_`` set) and the age and gender columns."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None; "
                "pass y of shape (n, 2) with columns [age, gender]."
            )
        X, y = validate_data(self, X, _target_array(y), reset=True, allow_nd=True, dtype=np.float32,
                             multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != 2:
            raise ValueError(
                f"y must have shape (n, 2) with columns [age, gender], got shape {y.shape}; "
                "stack them with np.column_stack([age, gender])."
            )
        age, gender = y[:, 0], y[:, 1]
        if np.any(~np.isfinite(age)) or np.any(age < 0):
            raise ValueError("y's age column must hold finite ages >= 0 (in years).")
        if not np.all(np.isin(gender, (0.0, 1.0))):
            found = np.unique(gender[~np.isin(gender, (0.0, 1.0))])[:5]
            raise ValueError(
                f"y's gender column must hold 0 (male) or 1 (female), found {found.tolist()}; "
                "map your labels to 0/1 first."
            )
        return _as_image_batch(X), age, gender

    def _seed_everything(self) -> int:
        """A seed drawn from ``random_state``; with one set, Python's, NumPy's and TensorFlow's generators too."""
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        if self.random_state is not None:
            import keras

            keras.utils.set_random_seed(seed)
        return seed

    def _split(self, n: int, gender: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Shuffled train/validation indices (Keras's own split takes the last rows)."""
        indices = np.arange(n)
        n_val = int(np.floor(self.validation_split * n))
        if n_val == 0:
            return indices, indices[:0]
        if n - n_val < 1:
            raise ValueError(
                f"validation_split={self.validation_split} leaves no training data for "
                f"{n} samples; lower it or pass more data."
            )
        _, counts = np.unique(gender, return_counts=True)
        stratify = gender if (len(counts) == 2 and counts.min() >= 2 and n_val >= 2) else None
        train, val = train_test_split(indices, test_size=n_val, random_state=seed, stratify=stratify)
        return np.sort(train), np.sort(val)

    def _initialize_network(self, input_shape: tuple[int, ...], *, initial_age: float, decay_steps: int) -> None:
        """A fresh network built and compiled from the estimator's parameters that the two functions take."""
        params = self.get_params(deep=False)
        self.input_shape_ = tuple(int(d) for d in input_shape)
        model = build_model(self.input_shape_, **_keywords_for(build_model, params), initial_age=initial_age)
        self.model_ = compile_for_training(model, **_keywords_for(compile_for_training, params),
                                           decay_steps=decay_steps)

    def _initialize_callbacks(self, *, monitor: str) -> list:
        """The user's callbacks, then the progress bar and early stopping when asked for."""
        import keras

        from .progress import EpochProgressBar

        callbacks = list(self.callbacks or [])
        if self.verbose:
            callbacks.append(EpochProgressBar(self.epochs))
        if self.early_stopping is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(monitor=monitor, patience=self.early_stopping, restore_best_weights=True)
            )
        return callbacks

    def _get_datasets(self, X: np.ndarray, targets: dict[str, np.ndarray], train: np.ndarray, val: np.ndarray,
                      seed: int):
        """The training batches (reshuffled every epoch) and the validation batches, or None without a split."""
        from .input_pipeline import array_dataset

        def rows(index):
            out = {name: values[index] for name, values in targets.items()}
            if self.age_head == "dex":
                out["age_distribution"] = age_distribution(out["age"])
            return out

        validation_data = None
        if len(val):
            validation_data = array_dataset(X[val], rows(val), batch_size=self.batch_size, shuffle=False)
        train_data = array_dataset(X[train], rows(train), batch_size=self.batch_size, shuffle=True, seed=seed)
        return train_data, validation_data

    def _record_history(self, history) -> None:
        self.history_ = {name: [float(v) for v in values] for name, values in history.history.items()}
        self.n_epochs_ = len(self.history_["loss"])

    # -------------------------------------------------------------- predict
    def _validate_images(self, X) -> np.ndarray:
        """``X`` checked against the fitted estimator, as a float32 batch ``(n, h, w, c)``."""
        try:
            check_is_fitted(self)
        except NotFittedError as exc:
            raise NotFittedEstimatorError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, y) first, or use "
                "skface.load_pretrained() for a ready model."
            ) from exc
        if isinstance(X, np.ndarray) and X.dtype == np.uint8 and X.ndim == 4 and len(X):
            # What ImagePreprocessor returns: always finite, so check_array (a tenth of a
            # millisecond, which one image notices) is skipped; the shapes are checked below.
            checked = X
        else:
            checked = check_array(X, allow_nd=True, dtype=np.float32, estimator=self, input_name="X")
        images = _as_image_batch(checked)
        if checked.ndim > 2:  # images get a clearer message than scikit-learn's count of features
            self._check_image_shape(images)
        validate_data(self, checked, reset=False, skip_check_array=True)  # n_features_in_
        self._check_image_shape(images)  # a table of the right width on a model fitted on images
        return images.astype(np.float32, copy=False)

    def _check_image_shape(self, images: np.ndarray) -> None:
        if tuple(images.shape[1:]) != self.input_shape_:
            h, _, c = self.input_shape_
            raise ValueError(
                f"X has images of shape {tuple(images.shape[1:])}, but this model was fitted on "
                f"{self.input_shape_}; resize them, e.g. with "
                f"ImagePreprocessor(image_size={h}, color={'grayscale' if c == 1 else 'rgb'!r})."
            )

    def predict(self, X) -> np.ndarray:
        """Predict ``[age, gender]`` for each image.

        Parameters
        ----------
        X : array-like of shape (n, h, w, c)
            Images of the shape seen in ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n, 2)
            Age in years (>= 0) and gender (0 = male, 1 = female).
        """
        return self.predict_with_proba(X)[0]

    def predict_proba(self, X) -> np.ndarray:
        """Predict the gender probabilities of each image.

        Parameters
        ----------
        X : array-like of shape (n, h, w, c)
            Images of the shape seen in ``fit``.

        Returns
        -------
        proba : ndarray of shape (n, 2)
            ``[P(male), P(female)]``; each row sums to 1.
        """
        return self.predict_with_proba(X)[1]

    def predict_with_proba(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``predict(X)`` and ``predict_proba(X)`` from one pass through the network.

        Parameters
        ----------
        X : array-like of shape (n, h, w, c)
            Images of the shape seen in ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n, 2)
            As :meth:`predict`.
        proba : ndarray of shape (n, 2)
            As :meth:`predict_proba`.
        """
        age, p_female, _ = self._predict_outputs(X)
        p_female = temper(p_female, getattr(self, "gender_temperature_", 1.0))
        return np.column_stack([age, (p_female >= 0.5).astype(np.float64)]), np.column_stack([1.0 - p_female, p_female])

    def _predict_outputs(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Age, untempered P(female) and the age's spread of each image, over the test-time views."""
        images = self._validate_images(X)
        return predict_outputs(self.model_, images, zooms=zoom_factors(self.zoom_tta), flip=bool(self.flip_tta))

    def conformalize(self, X, y) -> AgeGenderCNN:
        """Calibrate the age range and the gender probability on faces the network did not train on.

        Afterwards :meth:`predict_interval` gives age ranges whose stated
        share of true ages falls inside (split conformal prediction,
        normalised by the spread of the age estimate, per band of predicted
        age; see :mod:`skface.network.calibration`), and :meth:`predict_proba` gives
        tempered gender probabilities (one temperature, fitted by log loss).
        The predicted ages and genders do not change. The name and the order
        (``fit``, then ``conformalize`` on held-out faces) follow MAPIE.

        Parameters
        ----------
        X : array-like of shape (n, h, w, c)
            Calibration images, not used in ``fit``: from the same
            distribution as the faces the model will answer. A few hundred at
            least; a level ``c`` needs ``n >= c / (1 - c)``.
        y : array-like of shape (n, 2) or DataFrame
            Their true ``[age, gender]``.

        Returns
        -------
        self : AgeGenderCNN
            With ``age_conformity_scores_`` and ``gender_temperature_``.
        """
        y = _target_array(y)
        y = check_array(y, dtype=np.float64, ensure_2d=True, input_name="y")
        if y.shape[1] != 2 or len(y) != len(X):
            raise ValueError(f"y must have one [age, gender] row per image: got shape {y.shape} for {len(X)} images.")
        age, p_female, spread = self._predict_outputs(X)
        self.age_conformity_scores_ = conformity_scores(y[:, 0], age, spread)
        genders = np.unique(y[:, 1])
        self.gender_temperature_ = fit_temperature(y[:, 1], p_female) if len(genders) == 2 else 1.0
        return self

    def predict_interval(self, X, confidence_level: float = 0.8) -> np.ndarray:
        """An age range per image that holds the true age with the stated probability.

        Parameters
        ----------
        X : array-like of shape (n, h, w, c)
            Images of the shape seen in ``fit``.
        confidence_level : float, default=0.8
            Share of true ages that the ranges should hold, in (0, 1), as in
            MAPIE's ``predict_interval``.

        Returns
        -------
        intervals : ndarray of shape (n, 2)
            ``[low, high]`` in years per image, around :meth:`predict`'s age.

        Raises
        ------
        NotFittedEstimatorError
            If the model was never calibrated with :meth:`conformalize`.
        """
        return self.predict_with_interval(X, confidence_level)[2]

    def predict_with_interval(self, X, confidence_level: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`predict`, :meth:`predict_proba` and :meth:`predict_interval` from one pass through the network.

        Parameters
        ----------
        X : array-like of shape (n, h, w, c)
            Images of the shape seen in ``fit``.
        confidence_level : float, default=0.8
            As in :meth:`predict_interval`.

        Returns
        -------
        y_pred, proba, intervals : ndarray of shape (n, 2) each
        """
        if not self.is_conformalized():
            raise NotFittedEstimatorError(
                f"This {type(self).__name__} has no calibration for age ranges; call "
                "conformalize(X_calibration, y_calibration) on faces it did not train on, or use "
                "skface.load_pretrained(), which is calibrated."
            )
        age, p_female, spread = self._predict_outputs(X)
        half_width = half_widths(self.age_conformity_scores_, age, confidence_level)
        p_female = temper(p_female, self.gender_temperature_)
        y_pred = np.column_stack([age, (p_female >= 0.5).astype(np.float64)])
        return y_pred, np.column_stack([1.0 - p_female, p_female]), age_interval(age, spread, half_width)

    def is_conformalized(self) -> bool:
        """Whether :meth:`conformalize` calibrated this model, so that it can give age ranges."""
        return hasattr(self, "age_conformity_scores_")

    def score(self, X, y, sample_weight=None) -> float:
        """Mean of the gender accuracy and the age R^2 (higher is better).

        Both parts are at most 1, so the score is at most 1; a model that
        always guesses the majority gender and the mean age scores about
        0.25. For a single figure per head, use the scorers in
        :mod:`skface.metrics`.

        Parameters
        ----------
        X : array-like of shape (n, h, w, c)
            Images.
        y : array-like of shape (n, 2) or DataFrame
            True ``[age, gender]``.
        sample_weight : None
            Not supported; must be None.

        Returns
        -------
        score : float
        """
        if sample_weight is not None:
            raise ValueError("score does not support sample_weight; pass None.")
        return combined_score(_target_array(y), self.predict(X))

    # --------------------------------------------------------------- pickle
    def __getstate__(self):
        state = self.__dict__.copy()
        model = state.pop("model_", None)
        if model is not None:
            from .architecture import save_network

            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.keras")
                save_network(model, path)
                with open(path, "rb") as f:
                    state["_model_bytes"] = f.read()
        return state

    def __setstate__(self, state):
        state = dict(state)
        model_bytes = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if model_bytes is not None:
            from .architecture import load_network

            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.keras")
                with open(path, "wb") as f:
                    f.write(model_bytes)
                self.model_ = load_network(path)

    def __sklearn_is_fitted__(self) -> bool:
        # Fitted means a network to predict with: a fit that failed after validating X is not.
        return hasattr(self, "model_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags


def _keywords_for(function, params: dict) -> dict:
    """The entries of ``params`` that ``function`` takes as arguments."""
    accepted = inspect.signature(function).parameters
    return {name: value for name, value in params.items() if name in accepted}


def _as_image_batch(X: np.ndarray) -> np.ndarray:
    """A checked array as images ``(n, h, w, c)``: a 3-D batch is grayscale, a 2-D table one-row images."""
    if X.ndim == 2:
        return X[:, np.newaxis, :, np.newaxis]
    if X.ndim == 3:
        return X[..., np.newaxis]
    if X.ndim != 4:
        raise ValueError(
            f"X must be a batch of images of shape (n, h, w, c), got {X.ndim} dimensions; "
            "use skface.ImagePreprocessor to turn files or bytes into images."
        )
    return X


def _target_array(y):
    """``y`` as an (n, 2) float array; a DataFrame is read by its column names."""
    if hasattr(y, "columns"):
        missing = [c for c in _TARGET_COLUMNS if c not in y.columns]
        if missing:
            raise ValueError(
                f"a DataFrame y needs columns 'age' and 'gender'; missing {missing}, got "
                f"{list(y.columns)}."
            )
        return y[list(_TARGET_COLUMNS)].to_numpy(dtype=np.float64)
    return y

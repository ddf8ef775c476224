"""``AgeGenderCNN``: the two-output Keras network as a scikit-learn estimator."""

from __future__ import annotations

import os
import tempfile
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, validate_data

from ..exceptions import NotFittedEstimatorError
from ..metrics import combined_score

_TARGET_COLUMNS = ("age", "gender")
# Images per call of the compiled network: bounds the memory that the test-time views take
# (the shipped model's six views of 64 images are 384 network inputs).
_PREDICT_CHUNK = 64


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
        Images per gradient step. Predictions go through the network 64
        images at a time (with all their test-time views), whatever this is.
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

    # ------------------------------------------------------------------ fit
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
        import keras

        from .architecture import age_distribution, build_model
        from .input_pipeline import array_dataset
        from .progress import EpochProgressBar

        self._check_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None; "
                "pass y of shape (n, 2) with columns [age, gender]."
            )
        X, y = self._validate_input(X, y, reset=True)
        age, gender = y[:, 0], y[:, 1]
        if np.any(~np.isfinite(age)) or np.any(age < 0):
            raise ValueError("y's age column must hold finite ages >= 0 (in years).")
        if not np.all(np.isin(gender, (0.0, 1.0))):
            found = np.unique(gender[~np.isin(gender, (0.0, 1.0))])[:5]
            raise ValueError(
                f"y's gender column must hold 0 (male) or 1 (female), found {found.tolist()}; "
                "map your labels to 0/1 first."
            )

        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        if self.random_state is not None:
            keras.utils.set_random_seed(seed)
        train, val = self._split(len(X), gender, seed)

        self.input_shape_ = tuple(int(d) for d in X.shape[1:])
        self.model_ = build_model(
            self.input_shape_,
            architecture=self.architecture,
            filters=tuple(self.filters),
            kernel_size=self.kernel_size,
            dense_units=self.dense_units,
            bottleneck=self.bottleneck,
            dropout=self.dropout,
            learning_rate=self.learning_rate,
            lr_schedule=self.lr_schedule,
            decay_steps=self.epochs * int(np.ceil(len(train) / self.batch_size)),
            weight_decay=self.weight_decay,
            augment=bool(self.augment),
            age_head=self.age_head,
            label_smoothing=self.label_smoothing,
            precision=self.precision,
            age_loss_weight=self.age_loss_weight,
            gender_loss_weight=self.gender_loss_weight,
            initial_age=float(np.median(age[train])),
        )
        callbacks = list(self.callbacks or [])
        if self.verbose:
            callbacks.append(EpochProgressBar(self.epochs))
        if self.early_stopping is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss" if len(val) else "loss",
                    patience=self.early_stopping,
                    restore_best_weights=True,
                )
            )

        def targets(rows):
            out = {"age": age[rows], "gender": gender[rows]}
            if self.age_head == "dex":
                out["age_distribution"] = age_distribution(age[rows])
            return out

        validation_data = None
        if len(val):
            validation_data = array_dataset(X[val], targets(val), batch_size=self.batch_size, shuffle=False)
        history = self.model_.fit(
            array_dataset(X[train], targets(train), batch_size=self.batch_size, shuffle=True, seed=seed),
            validation_data=validation_data,
            epochs=self.epochs,
            shuffle=False,  # the dataset reshuffles itself every epoch
            callbacks=callbacks,
            verbose=0,
        )
        self.history_ = {name: [float(v) for v in values] for name, values in history.history.items()}
        self.n_epochs_ = len(self.history_["loss"])
        return self

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

    def _check_params(self) -> None:
        filters = self.filters
        if (
            isinstance(filters, (str, bytes))
            or not hasattr(filters, "__len__")
            or len(filters) == 0
            or not all(isinstance(f, Integral) and not isinstance(f, bool) and f > 0 for f in filters)
        ):
            raise ValueError(f"filters must be a non-empty tuple of positive ints, e.g. (32, 64), got {filters!r}.")
        for name in ("kernel_size", "dense_units", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if not isinstance(self.bottleneck, Integral) or isinstance(self.bottleneck, bool) or self.bottleneck < 0:
            raise ValueError(f"bottleneck must be an int >= 0 (0 for none), got {self.bottleneck!r}.")
        if self.bottleneck and self.architecture != "seed":
            raise ValueError(f"bottleneck applies to architecture='seed' only (the {self.architecture!r} network "
                             "ends in global average pooling); set bottleneck=0 or architecture='seed'.")
        checks = {
            "dropout": (self.dropout, 0.0, 1.0, "[0, 1)"),
            "validation_split": (self.validation_split, 0.0, 1.0, "[0, 1)"),
        }
        for name, (value, low, high, text) in checks.items():
            if not isinstance(value, Real) or not low <= value < high:
                raise ValueError(f"{name} must be a float in {text}, got {value!r}.")
        for name in ("learning_rate", "age_loss_weight", "gender_loss_weight"):
            value = getattr(self, name)
            if not isinstance(value, Real) or not np.isfinite(value) or value < 0 or (name == "learning_rate" and value == 0):
                raise ValueError(f"{name} must be a positive float, got {value!r}.")
        from .architecture import AGE_HEADS, ARCHITECTURES, LR_SCHEDULES, PRECISIONS

        for name, choices in (("architecture", ARCHITECTURES), ("age_head", AGE_HEADS),
                              ("precision", PRECISIONS), ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(self, name)!r}.")
        if not isinstance(self.weight_decay, Real) or not 0 <= self.weight_decay < 1:
            raise ValueError(f"weight_decay must be a float in [0, 1), got {self.weight_decay!r}.")
        if not isinstance(self.label_smoothing, Real) or not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be a float in [0, 0.5), got {self.label_smoothing!r}.")
        self._zoom_factors()
        if self.early_stopping is not None and (
            not isinstance(self.early_stopping, Integral) or self.early_stopping < 1
        ):
            raise ValueError(
                f"early_stopping must be None or a patience in epochs (a positive int), got {self.early_stopping!r}."
            )

    def _validate_input(self, X, y=None, *, reset: bool):
        if y is not None:
            y = _target_array(y)
            X, y = validate_data(
                self, X, y, reset=reset, allow_nd=True, dtype=np.float32, multi_output=True, y_numeric=True
            )
            y = np.asarray(y, dtype=np.float64)
            if y.ndim != 2 or y.shape[1] != 2:
                raise ValueError(
                    f"y must have shape (n, 2) with columns [age, gender], got shape {y.shape}; "
                    "stack them with np.column_stack([age, gender])."
                )
        elif isinstance(X, np.ndarray) and X.dtype == np.uint8 and X.ndim == 4 and len(X):
            # What ImagePreprocessor returns: always finite, so only the cast is needed
            # (check_array costs a tenth of a millisecond per call, which one image notices).
            X = X.astype(np.float32)
        else:
            # The fitted image shape is checked below with a clearer message than
            # scikit-learn's n_features_in_ check, so only the array is validated here.
            X = check_array(X, allow_nd=True, dtype=np.float32)
        if X.ndim == 2:
            X = X[:, np.newaxis, :, np.newaxis]
        elif X.ndim == 3:
            X = X[..., np.newaxis]
        elif X.ndim != 4:
            raise ValueError(
                f"X must be a batch of images of shape (n, h, w, c), got {X.ndim} dimensions; "
                "use skface.ImagePreprocessor to turn files or bytes into images."
            )
        if not reset and tuple(X.shape[1:]) != self.input_shape_:
            h, w, c = self.input_shape_
            raise ValueError(
                f"X has images of shape {tuple(X.shape[1:])}, but this model was fitted on "
                f"{self.input_shape_}; resize them, e.g. with "
                f"ImagePreprocessor(image_size={h}, color={'grayscale' if c == 1 else 'rgb'!r})."
            )
        return (X, y) if y is not None else X

    # -------------------------------------------------------------- predict
    def _predict_raw(self, X) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "model_"):
            raise NotFittedEstimatorError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, y) first, or use "
                "skface.load_pretrained() for a ready model."
            )
        import tensorflow as tf

        X = self._validate_input(X, reset=False)
        forward = self._compiled_forward(self._zoom_factors())
        # A compiled call per chunk: the test-time views of its images ride in the same batch.
        outputs = [forward(tf.convert_to_tensor(X[start:start + _PREDICT_CHUNK]))
                   for start in range(0, len(X), _PREDICT_CHUNK)]
        return tuple(np.concatenate([np.asarray(out[i], dtype=np.float64) for out in outputs]) for i in (0, 1))

    def _zoom_factors(self) -> tuple[float, ...]:
        """``zoom_tta`` checked, as a tuple."""
        value = self.zoom_tta
        if value is None:
            return ()
        if (isinstance(value, (str, bytes)) or not hasattr(value, "__iter__")
                or not all(isinstance(z, Real) and not isinstance(z, bool) and 0.5 <= z <= 2 for z in value)):
            raise ValueError(f"zoom_tta must be a tuple of zoom factors between 0.5 and 2, e.g. (1.075, 0.935), "
                             f"or () for none; got {value!r}.")
        return tuple(float(z) for z in value)

    def _compiled_forward(self, zooms: tuple[float, ...]):
        """Inference with test-time views as a compiled TensorFlow function, built once per model and views.

        ``model.predict`` builds a data pipeline per call and an eager call runs
        layer by layer from Python, each costing milliseconds; a traced graph
        answers a few images several times faster, and large batches, in
        chunks, about twice as fast as ``model.predict`` (whose input threads
        compete with the network's on a small CPU). The graph is traced once,
        for any batch size, and called as a concrete function: that skips the
        per-call signature matching of a ``tf.function`` (about 0.4 ms).
        """
        key = (self.model_, zooms, bool(self.flip_tta), self.input_shape_)
        if getattr(self, "_compiled_for", None) != key:
            import tensorflow as tf

            model, flip = self.model_, bool(self.flip_tta)

            def forward(images):
                views = _views(images, zooms, flip)
                out = model(tf.concat(views, axis=0), training=False)

                def mean_over_views(values):
                    return tf.reduce_mean(tf.reshape(tf.cast(values, tf.float32), (len(views), -1)), axis=0)

                return mean_over_views(out["age"]), mean_over_views(out["gender"])

            spec = tf.TensorSpec((None, *self.input_shape_), tf.float32)
            self._compiled, self._compiled_for = tf.function(forward).get_concrete_function(spec), key
        return self._compiled

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
        age, p_female = self._predict_raw(X)
        y_pred = np.column_stack([age, (p_female >= 0.5).astype(np.float64)])
        return y_pred, np.column_stack([1.0 - p_female, p_female])

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
        for cached in ("_compiled", "_compiled_for"):  # the compiled function is rebuilt on first use
            state.pop(cached, None)
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags


def _views(images, zooms: tuple[float, ...], flip: bool) -> list:
    """The test-time views of a batch: itself, one zoom per factor, and the mirror of each when ``flip``.

    A zoom factor above 1 enlarges the face about the centre (the border is
    cropped); below 1 it shrinks it (edge pixels are repeated), with the same
    bilinear resampling as the training augmentation.
    """
    import keras

    ops = keras.ops
    views = [images]
    if zooms:
        height, width = int(images.shape[1]), int(images.shape[2])
        cx, cy = (width - 1) / 2, (height - 1) / 2
        for zoom in zooms:
            scale = 1.0 / zoom  # output pixel p samples the input at centre + scale * (p - centre)
            transform = ops.tile(ops.convert_to_tensor([[scale, 0.0, cx * (1 - scale), 0.0, scale, cy * (1 - scale),
                                                         0.0, 0.0]], dtype="float32"), (ops.shape(images)[0], 1))
            views.append(ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest"))
    if flip:
        views += [ops.flip(view, axis=2) for view in views]
    return views


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

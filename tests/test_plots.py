import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import same_color
from matplotlib.figure import Figure
from PIL import Image

from skface import plots


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    """Every plot is built without pyplot, so none is left registered there."""
    assert plt.get_fignums() == []
    yield
    assert plt.get_fignums() == []


@pytest.fixture(scope="module")
def targets():
    """200 true and noisy predicted [age, gender] rows spanning every age band."""
    rng = np.random.RandomState(0)
    age = rng.randint(0, 91, 200).astype(float)
    gender = rng.randint(0, 2, 200).astype(float)
    y_true = np.column_stack([age, gender])
    flip = rng.rand(200) < 0.1
    y_pred = np.column_stack([np.clip(age + rng.normal(0, 5, 200), 0, None), np.where(flip, 1 - gender, gender)])
    return y_true, y_pred


@pytest.fixture(scope="module")
def history():
    return {
        "loss": [3.0, 2.0, 1.5, 1.2],
        "val_loss": [3.2, 2.4, 2.0, 1.9],
        "age_loss": [2.0, 1.5, 1.0, 0.8],
        "gender_loss": [0.7, 0.5, 0.4, 0.3],
        "age_mae": [20.0, 12.0, 9.0, 8.0],
        "val_age_mae": [21.0, 14.0, 11.0, 10.0],
        "gender_accuracy": [0.5, 0.7, 0.8, 0.85],
        "val_gender_accuracy": [0.5, 0.65, 0.75, 0.8],
        "learning_rate": [1e-3, 1e-3, 5e-4, 5e-4],
    }


def _assert_png(figure, tmp_path, name="figure.png"):
    path = plots.save_figure(figure, tmp_path / name)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 100 and image.size[1] > 100


# learning_curves


def test_learning_curves_panels_and_lines(history, tmp_path):
    figure = plots.learning_curves(history)
    assert isinstance(figure, Figure)
    assert [ax.get_title() for ax in figure.axes] == ["Total loss", "Age MAE", "Gender accuracy"]
    assert all(ax.get_xlabel() == "Epoch" for ax in figure.axes)
    assert "years" in figure.axes[1].get_ylabel()
    for ax in figure.axes:
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels[:2] == ["train", "validation"]
        train = ax.get_lines()[0]
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
    # Accuracy is drawn in percent.
    np.testing.assert_allclose(figure.axes[2].get_lines()[0].get_ydata(), [50, 70, 80, 85])
    _assert_png(figure, tmp_path)


def test_learning_curves_marks_learning_rate_changes(history):
    figure = plots.learning_curves(history)
    changes = [line for line in figure.axes[0].get_lines() if line.get_linestyle() == ":"]
    assert len(changes) == 1
    assert changes[0].get_xdata()[0] == 3


def test_learning_curves_without_validation_or_metrics(tmp_path):
    figure = plots.learning_curves({"loss": [1.0], "age_mae": [9.0]})
    assert len(figure.axes) == 3
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["train"]
    assert [line.get_label() for line in figure.axes[1].get_lines()] == ["train"]
    assert figure.axes[2].get_lines() == []
    assert "'gender_accuracy' not in history" in [text.get_text() for text in figure.axes[2].texts]
    _assert_png(figure, tmp_path)


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ([1.0, 2.0], "must be a dict of metric name"),
        ({"age_mae": [1.0]}, "must have a 'loss' key"),
        ({"loss": []}, r"history\['loss'\] is empty"),
        ({"loss": [1.0, 2.0], "val_loss": [1.0]}, "one value per epoch .2, as 'loss' has.*'val_loss'"),
    ],
)
def test_learning_curves_rejects_bad_history(history, match):
    with pytest.raises(ValueError, match=match):
        plots.learning_curves(history)


# predicted_vs_true_age


def test_predicted_vs_true_age(targets, tmp_path):
    y_true, y_pred = targets
    figure = plots.predicted_vs_true_age(y_true, y_pred)
    (ax,) = figure.axes
    mae = np.mean(np.abs(y_true[:, 0] - y_pred[:, 0]))
    assert f"MAE {mae:.1f} years" in ax.get_title()
    assert ax.get_xlabel() == "True age (years)"
    assert ax.get_ylabel() == "Predicted age (years)"
    assert ax.get_xlim() == ax.get_ylim()
    assert ax.get_aspect() == 1.0
    identity = [line for line in ax.get_lines() if line.get_label() == "perfect prediction"]
    np.testing.assert_array_equal(identity[0].get_xdata(), identity[0].get_ydata())
    _assert_png(figure, tmp_path)


def test_predicted_vs_true_age_rejects_negative_tolerance(targets):
    with pytest.raises(ValueError, match="tolerance must be a number of years >= 0"):
        plots.predicted_vs_true_age(*targets, tolerance=-1)


# error_by_age_band


def test_error_by_age_band_only_present_bands_in_order(tmp_path):
    # Three bands out of six, given out of order.
    y_true = np.array([[70, 0], [5, 1], [30, 0], [8, 0], [65, 1]], dtype=float)
    y_pred = np.array([[60, 0], [7, 1], [31, 1], [8, 0], [65, 1]], dtype=float)
    figure = plots.error_by_age_band(y_true, y_pred)
    mae_ax, accuracy_ax = figure.axes
    assert mae_ax.get_title() == "Age MAE by age band"
    assert accuracy_ax.get_title() == "Gender accuracy by age band"
    assert "years" in mae_ax.get_ylabel()
    for ax in figure.axes:
        assert [tick.get_text() for tick in ax.get_xticklabels()] == ["3-12", "20-39", "60+"]
    np.testing.assert_allclose([bar.get_height() for bar in mae_ax.patches], [1.0, 1.0, 5.0])
    np.testing.assert_allclose([bar.get_height() for bar in accuracy_ax.patches], [100.0, 0.0, 100.0])
    assert [text.get_text() for text in mae_ax.texts] == ["1.0\nn=2", "1.0\nn=1", "5.0\nn=2"]
    assert [text.get_text() for text in accuracy_ax.texts] == ["100%\nn=2", "0%\nn=1", "100%\nn=2"]
    _assert_png(figure, tmp_path)


def test_error_by_age_band_all_bands(targets):
    figure = plots.error_by_age_band(*targets)
    assert [tick.get_text() for tick in figure.axes[0].get_xticklabels()] == [
        "0-2", "3-12", "13-19", "20-39", "40-59", "60+",
    ]


# gender_confusion_matrix


def test_gender_confusion_matrix(tmp_path):
    y_true = np.array([[30, 0], [30, 0], [30, 0], [30, 1]], dtype=float)
    y_pred = np.array([[30, 0], [30, 0], [30, 1], [30, 1]], dtype=float)
    figure = plots.gender_confusion_matrix(y_true, y_pred)
    ax = figure.axes[0]
    assert len(figure.axes) == 2  # the heatmap and its colour bar
    assert "accuracy 75.0%" in ax.get_title()
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["male", "female"]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["male", "female"]
    assert ax.get_xlabel() == "Predicted gender"
    assert ax.get_ylabel() == "True gender"
    assert [text.get_text() for text in ax.texts] == ["2\n(66.7%)", "1\n(33.3%)", "0\n(0.0%)", "1\n(100.0%)"]
    _assert_png(figure, tmp_path)


def test_gender_confusion_matrix_with_one_gender_only():
    y = np.array([[30, 1], [40, 1]], dtype=float)
    ax = plots.gender_confusion_matrix(y, y).axes[0]
    assert [text.get_text() for text in ax.texts] == ["0\n(no faces)", "0\n(no faces)", "0\n(0.0%)", "2\n(100.0%)"]


# face_grid


def _faces(n, channels=1):
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (n, 16, 16, channels)).astype(np.uint8)


def test_face_grid_titles_and_colours(tmp_path):
    y_true = np.array([[34, 1], [34, 1], [34, 1], [34, 1]], dtype=float)
    y_pred = np.array([
        [34, 1],  # exact
        [39, 1],  # age off by exactly the tolerance: still right
        [40, 1],  # age off by 6
        [34, 0],  # gender wrong
    ], dtype=float)
    figure = plots.face_grid(_faces(4), y_true, y_pred, n_faces=4)
    assert len(figure.axes) == 4
    titles = [ax.title for ax in figure.axes]
    assert [title.get_text() for title in titles] == [
        "true 34 F / pred 34 F", "true 34 F / pred 39 F", "true 34 F / pred 40 F", "true 34 F / pred 34 M",
    ]
    expected = [plots.CORRECT_COLOR, plots.CORRECT_COLOR, plots.WRONG_COLOR, plots.WRONG_COLOR]
    assert [same_color(title.get_color(), color) for title, color in zip(titles, expected)] == [True] * 4
    assert same_color(plots.CORRECT_COLOR, "#1a7f37") and not same_color(plots.CORRECT_COLOR, plots.WRONG_COLOR)
    _assert_png(figure, tmp_path)


def test_face_grid_samples_n_faces_reproducibly(targets):
    y_true, y_pred = targets
    images = _faces(len(y_true))
    figure = plots.face_grid(images, y_true, y_pred, random_state=3)
    assert len(figure.axes) == 16
    again = plots.face_grid(images, y_true, y_pred, random_state=3)
    assert [ax.get_title() for ax in figure.axes] == [ax.get_title() for ax in again.axes]
    grayscale = figure.axes[0].get_images()[0]
    assert grayscale.get_cmap().name == "gray"
    assert grayscale.get_clim() == (0, 255)


@pytest.mark.parametrize("n", [1, 5])
def test_face_grid_with_fewer_faces_than_asked(n, tmp_path):
    y = np.column_stack([np.arange(n) * 10.0, np.zeros(n)])
    figure = plots.face_grid(_faces(n, channels=3), y, y, n_faces=16)
    assert len(figure.axes) == n
    assert figure.axes[0].get_images()[0].get_array().shape == (16, 16, 3)
    _assert_png(figure, tmp_path)


@pytest.mark.parametrize(
    ("images", "kwargs", "match"),
    [
        (_faces(3)[..., 0], {}, r"images must have shape \(n, h, w, c\).*got shape \(3, 16, 16\)"),
        (_faces(3, channels=2), {}, r"c = 1 \(grayscale\) or 3 \(RGB\)"),
        (_faces(3).astype(np.float32), {}, "images must be uint8.*got dtype float32"),
        (_faces(4), {}, "images and y_true must have the same number of rows, got 4 and 3"),
        (_faces(3), {"n_faces": 0}, "n_faces must be a positive int, got 0"),
        (_faces(3), {"tolerance": -2}, "tolerance must be a number of years >= 0"),
    ],
)
def test_face_grid_rejects_bad_input(images, kwargs, match):
    y = np.array([[10, 0], [20, 1], [30, 0]], dtype=float)
    with pytest.raises(ValueError, match=match):
        plots.face_grid(images, y, y, **kwargs)


# target checks shared by every prediction plot

TARGET_PLOTS = [plots.predicted_vs_true_age, plots.error_by_age_band, plots.gender_confusion_matrix]
GOOD = np.array([[10, 0], [20, 1], [30, 0]], dtype=float)


@pytest.mark.parametrize("plot", TARGET_PLOTS)
@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [
        (GOOD, GOOD[:2], "same number of rows, got 3 and 2"),
        (GOOD[:, 0], GOOD, r"y_true must have shape \(n, 2\) with columns \[age, gender\], got shape \(3,\)"),
        (GOOD, np.ones((3, 3)), r"y_pred must have shape \(n, 2\)"),
        (GOOD[:0], GOOD[:0], "empty; pass at least one face"),
        (GOOD, np.array([[10, 0.2], [20, 0.9], [30, 0.1]]), "y_pred's gender column must hold 0 .* not predict_proba"),
        (np.array([[np.nan, 0], [20, 1], [30, 0]]), GOOD, "y_true's age column holds NaN"),
        (np.array([[-1, 0], [20, 1], [30, 0]]), GOOD, "y_true's ages must be >= 0 years"),
    ],
)
def test_prediction_plots_reject_bad_targets(plot, y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        plot(y_true, y_pred)


def test_face_grid_checks_targets_too():
    with pytest.raises(ValueError, match="same number of rows, got 3 and 2"):
        plots.face_grid(_faces(3), GOOD, GOOD[:2])


# save_figure


def test_save_figure_creates_folders(targets, tmp_path):
    figure = plots.predicted_vs_true_age(*targets)
    path = plots.save_figure(figure, tmp_path / "plots" / "nested" / "scatter.png")
    assert path == tmp_path / "plots" / "nested" / "scatter.png"
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_save_figure_rejects_other_formats_and_non_figures(targets, tmp_path):
    figure = plots.predicted_vs_true_age(*targets)
    with pytest.raises(ValueError, match=r"writes PNG files, got a path ending in '.jpg'.*figure.savefig"):
        plots.save_figure(figure, tmp_path / "scatter.jpg")
    with pytest.raises(ValueError, match="figure must be a matplotlib.figure.Figure, got list"):
        plots.save_figure([], tmp_path / "scatter.png")

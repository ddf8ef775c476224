"""scikit-learn's own estimator checks, run on AgeGenderCNN and ImagePreprocessor."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skface import AgeGenderCNN, ImagePreprocessor

# scikit-learn's checks fit on a target with a single column, made for one-output
# estimators. AgeGenderCNN predicts two outputs and needs y of shape (n, 2) with
# columns [age, gender] (gender 0/1), so every check that fits on such a target
# stops at that (clearly worded) ValueError. skface's own tests cover what these
# checks would: fit returns self, params untouched, pickling, NaN input, sample
# order, Pipeline, clone and n_features_in_.
_ONE_COLUMN_Y = "fits on a one-column y; AgeGenderCNN needs y of shape (n, 2): [age, gender]"
EXPECTED_FAILED_CHECKS = {
    name: _ONE_COLUMN_Y
    for name in [
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
        "check_estimators_dtypes",
        "check_dtype_object",
        "check_pipeline_consistency",
        "check_estimators_nan_inf",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit2d_1sample",
        "check_fit2d_1feature",
        "check_dict_unchanged",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_fit2d_predict1d",
    ]
}


@parametrize_with_checks(
    [
        AgeGenderCNN(filters=(2,), dense_units=4, epochs=1, batch_size=16, verbose=0, random_state=0),
        ImagePreprocessor(image_size=8),
    ],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS if isinstance(est, AgeGenderCNN) else {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)

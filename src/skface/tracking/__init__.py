"""MLflow: runs, callbacks, evaluation reports, the registry's champion rule, the pyfunc model and the training recipes."""

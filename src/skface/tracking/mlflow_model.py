"""The file MLflow loads as the pyfunc model's code ("models from code": no pickle).

Only :func:`skface.tracking.pyfunc.log_model` refers to it; importing it declares
the model to MLflow.
"""

import mlflow

from skface.tracking.pyfunc import AgeGenderModel

mlflow.models.set_model(AgeGenderModel())

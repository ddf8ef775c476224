"""The Keras network and the scikit-learn estimator around it. Imports no MLflow."""

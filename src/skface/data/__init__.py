"""Images and data sets: decoding, preprocessing, UTKFace, synthetic faces. Imports neither TensorFlow nor MLflow."""

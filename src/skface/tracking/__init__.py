"""MLflow: runs, callbacks, evaluation reports, the registry's champion rule, the pyfunc model and the training recipes.

Also the servers skface starts on loopback (``servers``) and the requests that time a served model
(``scoring_requests``).
"""

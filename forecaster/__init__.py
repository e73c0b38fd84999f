"""forecaster: forecast every training run in your experiment tracker."""

__version__ = "0.1.0"
# the name pip knows it by (pyproject [project].name): "forecaster" on PyPI is an unrelated project
DISTRIBUTION = "run-forecaster"

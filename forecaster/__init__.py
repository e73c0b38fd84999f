"""forecaster: forecast every training run in your experiment tracker."""

__version__ = "0.1.0"

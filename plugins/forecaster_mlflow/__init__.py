"""MLflow adapter for `forecast sync` (entry point ``forecaster_mlflow:MlflowTracker``).

    tracker   `MlflowTracker`: identity, experiments, the run listing
    reads     metric histories, per run or many runs per request (the sampled multi-run route)
    writes    forecast and summary runs beside their sources, tags, the experiment's UI setup
    view      run colours and the shared chart view ``mlflow.sharedViewState.forecast-bands``
    client    the MLflow client's HTTP defaults, limits and failures in our words
    uri       the tracking URI without credentials; a local store must exist
"""

from __future__ import annotations

from forecaster_mlflow.tracker import MlflowTracker
from forecaster_mlflow.view import VIEW_TAG, band_view_state, chart_view_path, encode_view_state, run_color

__all__ = ["MlflowTracker", "VIEW_TAG", "band_view_state", "chart_view_path", "encode_view_state", "run_color"]

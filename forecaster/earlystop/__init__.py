"""Early-stopping backtest: replay each group's runs in file order as if trained one after another.

Modules: `rule` (the stop rule, shaped like an Optuna pruner), `replay` (the sequential replay and
its forecasts), `lawchoice` (which law each checkpoint uses), `baselines` (Optuna's pruners and
patience on the same runs), `scores` (compute saved, regret, false stops, calibration), `report`
(markdown), `backtest` (the whole run), `cli`. The calibrated predictive the rule states its
probabilities from is shared with the alerts (`forecaster.calibration`).
"""

from __future__ import annotations

from forecaster.calibration import local_prob_below, local_quantiles
from forecaster.earlystop.backtest import run_early_stop
from forecaster.earlystop.baselines import BASELINES, MAX_REPORTS, replay_baseline, replay_optuna, replay_patience
from forecaster.earlystop.cli import cli_early_stop
from forecaster.earlystop.lawchoice import bounded_from, candidate_laws, interval_score, law_score, score_from
from forecaster.earlystop.replay import (
    FINAL_POINTS, MethodResult, _groups, checkpoints, contexts, forecast_checkpoints, replay_forecast_rule,
)
from forecaster.earlystop.report import markdown
from forecaster.earlystop.rule import Evidence, StopRule, Verdict
from forecaster.earlystop.scores import score
from forecaster.earlystop.settings import EarlyStopSettings

__all__ = [
    "BASELINES", "FINAL_POINTS", "MAX_REPORTS", "EarlyStopSettings", "Evidence", "MethodResult", "StopRule",
    "Verdict", "bounded_from", "candidate_laws", "checkpoints", "cli_early_stop", "contexts",
    "forecast_checkpoints", "interval_score", "law_score", "local_prob_below", "local_quantiles", "markdown",
    "replay_baseline", "replay_forecast_rule", "replay_optuna", "replay_patience", "run_early_stop", "score",
    "score_from",
]

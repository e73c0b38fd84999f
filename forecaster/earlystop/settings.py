"""Settings of the early-stop backtest: the stop rule's thresholds, the replay's checkpoints, the baselines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EarlyStopSettings:
    """Thresholds of the rule and of the replay (checkpoints, margin, baseline settings)."""

    delta: float = 0.05  # stop when P(final < best finished run * (1 + margin)) < delta
    margin: float = 0.01  # relative: a run ending within this of the true best counts as near-best
    min_points: int = 5  # first check after this many observed values
    first_share: float = 0.1  # ...and not before this share of the run's logged points
    ratio: float = 1.4  # checkpoints at geometrically spaced shares of each run's logged points
    min_calibration: int = 5  # finished runs needed before the rule may stop anything
    # local calibration: the finished siblings whose forecast at the same checkpoint was nearest
    # (in log) to the run's; 50 keeps the conformal floor 1/51 well under delta
    neighbours: int = 50
    patience: int = 5  # patience rule: stop after this many checks without a new best value
    startup_trials: int = 5  # Optuna pruners' n_startup_trials (median), same warm-up as ours
    # context: each running run is fitted jointly with (partially pooled towards) this many most
    # recent finished siblings, complete histories without a horizon; 0 = its own prefix only.
    # Off by default: on LSTM PTB it cost ~20x the fitting time per round and several replay
    # rounds to settle (docs/benchmarks.md, "Early stopping")
    context: int = 0
    pool: float | None = None  # Forecaster's deviation penalty; None = the core's default
    max_rounds: int = 30  # replay rounds allowed for contexts to agree with the decisions
    # "auto": every law Forecaster's auto would consider, chosen per group and checkpoint by the
    # finished runs' interval scores (replay_forecast_rule); a law name: that law only
    law: str = "auto"
    # how the finished runs judge the laws: "interval" (interval score of the stated 1 - alpha
    # interval), or, as experiments, "log" (log density under the local predictive) and "crps"
    law_score: str = "interval"
    law_score_alpha: float = 0.1  # the stated interval is the 90 % one
    # finished runs scored before laws are compared; None = 2/alpha - 1, the fewest with which the
    # conformal interval is bounded (below that its levels reach 0 and 1)
    law_score_from: int | None = None
    device: str | None = None
    seed: int = 0

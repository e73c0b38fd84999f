"""Cross-run scaling laws (docs/laws.md §2): Chinchilla, over-training and loss-to-downstream-error.

`fit_scaling(points, law=..., objective=...)` is the pure entry point (the CLI and the sync engine
both call it); `ScalingPoints` carries the runs, `ScalingFit` the result with bootstrap intervals.
"""

from forecaster.scaling.fit import DEFAULT_OBJECTIVE, LAWS, OBJECTIVES, ScalingFit, fit_scaling
from forecaster.scaling.points import ScalingPoints, read_csv

__all__ = ["DEFAULT_OBJECTIVE", "LAWS", "OBJECTIVES", "ScalingFit", "ScalingPoints", "fit_scaling", "read_csv"]

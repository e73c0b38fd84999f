"""Cross-run scaling laws (docs/laws.md §2): Chinchilla, over-training and loss-to-downstream-error.

`fit_scaling(points, law=..., objective=...)` is the pure entry point (the CLI and the sync engine
both call it); `ScalingPoints` carries the runs, `ScalingFit` the result with bootstrap intervals.
The laws themselves are registered classes in `forecaster.scaling.laws` (one file each).
"""

from forecaster.scaling.fit import ScalingFit, fit_scaling
from forecaster.scaling.laws import OBJECTIVES, ScalingLaw
from forecaster.scaling.points import ScalingPoints, read_csv

__all__ = ["OBJECTIVES", "ScalingFit", "ScalingLaw", "ScalingPoints", "fit_scaling", "read_csv"]

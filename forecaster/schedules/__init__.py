"""Per-step learning-rate schedules: one-line specs, builders from tracker configs, logged points.

The LR-aware laws need the LR at *every* step, past and planned, while trackers log it sparsely or
not at all. A `Schedule` answers ``lr(steps)`` vectorised in float64 and prints itself as a one-line
spec that `parse` reads back to an equal object, e.g.::

    wsd(peak=3e-4, warmup=2160, total=24000, decay=0.2, shape=linear, final=3e-5)

Conventions (all families):

- ``step`` is the number of completed optimizer steps (0-based), as trackers log it and as the
  Hugging Face ``get_scheduler`` lambdas read it: ``lr(step) = peak * lambda(step)``.
- Warmup rises from ``start`` (default 0) to ``peak`` over ``warmup`` steps: ``lr = start +
  (peak - start) * w(step / warmup)`` with ``w`` linear (HF), cosine or 1-sqrt; step 0 gets ``start``.
- After warmup, progress-driven families read ``p = (step - warmup) / max(1, end - warmup)`` with
  ``end = until`` if given, else ``total`` (exactly the HF lambdas).
- ``total`` is the run's planned last step (``None`` when open-ended). ``until`` is only set when
  the LR shape finishes at another step than the run (nanoGPT ``lr_decay_iters != max_iters``, HF
  WSD phases shorter than ``max_steps``).
- Past the shape's end (``until`` or ``total``) the LR holds its value there (the final LR). HF's
  cosine would swing back up past ``num_training_steps``; no real run trains there, so we hold.
- Negative steps read as step 0.
- Step and multi-step milestones are absolute steps (the steps the tracker shows), not counted
  from the end of warmup.

Modules: `families` (the `Schedule` base and its LR shapes), `points` (LR known at points), `spec`
(reading a spec back), `from_config` (a schedule from a run's logged config), `values` and `curves`
(what they share: spec numbers and shape names, warmup and decay curves).
"""

from forecaster.schedules.families import (
    WSD, Constant, Cosine, CosineRestarts, InvSqrt, Linear, MultiStep, Poly, Power, Schedule, Step,
)
from forecaster.schedules.from_config import from_config
from forecaster.schedules.points import Interpolated, from_points
from forecaster.schedules.spec import FAMILIES, parse
from forecaster.schedules.values import format_number, spec_number

__all__ = [
    "Schedule", "Constant", "Linear", "Cosine", "CosineRestarts", "Poly", "WSD", "Step", "MultiStep",
    "InvSqrt", "Power", "Interpolated", "FAMILIES", "parse", "from_config", "from_points",
    "format_number", "spec_number",
]

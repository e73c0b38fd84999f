"""`WandbTracker`, the ``wandb`` entry point: the online or the offline tracker, as the options say.

Online (``--project ENTITY/PROJECT``, `online.OnlineWandbTracker`): runs through W&B's public API,
companion forecast runs written online. Offline (``--wandb-dir DIR``, `offline.OfflineWandbTracker`):
runs read from the ``offline-run-*`` transaction logs, companions written as offline runs beside
them for ``wandb sync`` to upload later. What both share is in `core`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from forecaster.trackers import TrackerOption
from forecaster_wandb.core import WandbCore


class WandbTracker(WandbCore):
    """Weights & Biases: runs of ENTITY/PROJECT online, or the offline runs of a wandb folder.

    ``WandbTracker(...)`` builds an `OnlineWandbTracker`, or an `OfflineWandbTracker` when
    ``wandb_dir`` is given; both are WandbTrackers.
    """

    name: ClassVar[str] = "wandb"
    options: ClassVar[tuple[TrackerOption, ...]] = (
        TrackerOption("project", "W&B ENTITY/PROJECT to sync (repeatable)", multiple=True),
        TrackerOption("wandb-dir", "offline / air-gapped: the wandb folder holding offline-run-* "
                      "(or a folder containing it); forecasts are written as offline runs that "
                      "`wandb sync` uploads later", envvar="FORECAST_WANDB_DIR"),
    )

    def __new__(cls, *args: Any, wandb_dir: str | None = None, **kwargs: Any) -> "WandbTracker":
        if cls is WandbTracker:  # subclasses of the online or offline tracker are built as they are
            from forecaster_wandb.offline import OfflineWandbTracker
            from forecaster_wandb.online import OnlineWandbTracker

            cls = OfflineWandbTracker if wandb_dir else OnlineWandbTracker
        return super().__new__(cls)

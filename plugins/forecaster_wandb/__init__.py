"""Weights & Biases adapter for `forecast sync`: reads runs (online or offline), writes companion forecast runs.

Registered as the ``wandb`` entry point of the ``forecaster.trackers`` group; the wandb client is
imported lazily, so loading this class to build the CLI costs nothing.
"""

from forecaster_wandb.tracker import WandbTracker

__all__ = ["WandbTracker"]

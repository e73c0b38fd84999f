"""The keys a run's logged config is searched for, first match wins: its length, size and data."""

from __future__ import annotations

STEPS_KEYS = ("max_steps", "max_iters", "total_steps", "num_training_steps", "train_steps")
SIZE_KEYS = ("n_params", "num_parameters", "num_params", "n_parameters", "model_size", "params")
TOKEN_KEYS = ("tokens", "train_tokens", "num_tokens", "n_tokens", "total_tokens", "training_tokens")
BATCH_TOKEN_KEYS = ("tokens_per_step", "batch_tokens", "tokens_per_batch", "tokens_per_iter")

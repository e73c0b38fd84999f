"""The tracker interface's generic helpers: history cleaning, discovery, fingerprints."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from forecaster import DISTRIBUTION, trackers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from forecaster.errors import InputError


def test_clean_series_sorts_and_keeps_last_write_per_step() -> None:
    s = trackers.clean_series([3, 1, 2, 2, 1], [30.0, 10.0, 20.0, 21.0, 11.0], [5, 1, 2, 9, 0])
    assert s.steps.tolist() == [1, 2, 3]
    # step 1: timestamp 1 beats timestamp 0; step 2: timestamp 9 wins
    assert s.values.tolist() == [10.0, 21.0, 30.0]


def test_clean_series_ties_on_timestamp_go_to_the_later_write_and_nan_is_kept() -> None:
    s = trackers.clean_series([0, 0, 1], [1.0, 2.0, np.nan], [7, 7, 7])
    assert s.values[0] == 2.0 and np.isnan(s.values[1])


def test_unknown_tracker_names_what_is_installed() -> None:
    with pytest.raises(InputError, match="unknown tracker 'nope'") as e:
        trackers.load("nope")
    assert "mlflow" in str(e.value)
    assert "pip install" not in str(e.value)  # no extra is called "nope": pointing at one would fail
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert DISTRIBUTION == project["name"]


def test_a_tracker_whose_extra_is_missing_gets_the_install_line(monkeypatch) -> None:
    """The hint names this project's distribution, not the unrelated "forecaster" on PyPI."""
    monkeypatch.setattr(trackers.registry, "available", lambda: {})
    with pytest.raises(InputError) as e:
        trackers.load("wandb")
    assert f"pip install '{DISTRIBUTION}[wandb]'" in str(e.value)


def test_fingerprint_is_stable_and_sensitive() -> None:
    assert trackers.fingerprint("a", 1) == trackers.fingerprint("a", 1)
    assert trackers.fingerprint("a", 1) != trackers.fingerprint("a", 2)

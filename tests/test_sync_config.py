"""Config file loading and the sync engine's pure per-run decisions (no tracker needed)."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster import config
from forecaster.errors import InputError
from forecaster.sync import Action, RunOutcome, SkipKind, SyncReport, SyncSettings, group_of, horizon, plan_run
from forecaster.trackers import FINISHED, RUNNING, RunInfo, Watermark

HF = {"learning_rate": "0.0003", "lr_scheduler_type": "cosine", "warmup_steps": "100", "max_steps": "1000"}


def _run(config_: dict, latest: dict | None = None, tags: dict | None = None, status: str = RUNNING) -> RunInfo:
    latest = {"loss": Watermark(400, 1, 3.0)} if latest is None else latest
    return RunInfo("abc123", "r", "7", status, latest=latest, config=config_, tags=tags or {})


def test_config_file_sections_and_errors(tmp_path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[sync]\nlock-wait = 3\nexperiments = ["a"]\n[config.rename]\nmy_total = "max_steps"\n')
    data = config.load(p)
    assert data["sync"] == {"lock_wait": 3, "experiments": ["a"]}
    m = config.ConfigMapping.from_table(data["config"])
    assert m.apply({"my_total": "9", "x": 1}) == {"max_steps": "9", "x": 1}
    p.write_text("[nope]\n")
    with pytest.raises(InputError, match="unknown section"):
        config.load(p)
    p.write_text("[sync\n")
    with pytest.raises(InputError, match="not valid TOML"):
        config.load(p)
    with pytest.raises(InputError, match="not found"):
        config.load(tmp_path / "missing.toml")


def test_mapping_defaults_under_and_per_run_values_over() -> None:
    m = config.ConfigMapping(defaults={"lr_scheduler_type": "linear", "a": 1}, runs={"r": {"a": 3}})
    assert m.apply({"a": 2}, "id", "r") == {"lr_scheduler_type": "linear", "a": 3}
    assert m.apply({"a": 2}, "id", "other") == {"lr_scheduler_type": "linear", "a": 2}


def test_horizon_runs_to_the_planned_end_at_the_logging_interval_capped() -> None:
    steps = np.arange(10, 401, 10)
    h = horizon(steps, 1000, 500)
    assert h[0] == 410 and h[-1] == 1000 and np.all(np.diff(h) == 10)
    h = horizon(steps, 100_000, 500)
    assert len(h) <= 500 and h[-1] == 100_000 and np.all(np.diff(h) > 0)
    assert len(horizon(steps, 400, 500)) == 0


def test_plan_reasons_and_fingerprint() -> None:
    s = SyncSettings()
    ok = plan_run(_run(HF), s)
    assert ok.reason is None and ok.total == 1000 and ok.schedule.spec().startswith("cosine(")
    none = plan_run(_run({"seed": "1"}), s)
    assert none.reason.startswith("no schedule:")
    bad = plan_run(_run({**HF, "warmup_steps": "-5"}), s)
    assert bad.reason.startswith("bad config:")
    lr_only = plan_run(_run({"seed": "1"}, latest={"loss": Watermark(400), "lr": Watermark(400)}), s)
    assert lr_only.reason.startswith("no planned end:")
    lr_total = plan_run(_run({"max_iters": "900"}, latest={"loss": Watermark(400), "lr": Watermark(400)}), s)
    assert lr_total.reason is None and lr_total.total == 900 and lr_total.lr_key == "lr"
    tagged = plan_run(_run({}, tags={"forecast.schedule": "constant(peak=1e-3, total=800)"}), s)
    assert tagged.reason is None and tagged.total == 800
    assert plan_run(_run(HF, latest={}), s).reason.startswith("no data:")
    done = plan_run(_run(HF, latest={"loss": Watermark(1000)}), s)
    assert done.reason.startswith("done:")
    # the fingerprint moves with the watermark and the config, not with anything else
    moved = plan_run(_run(HF, latest={"loss": Watermark(420, 1, 3.0)}), s)
    assert moved.fp != ok.fp and plan_run(_run(HF), s).fp == ok.fp
    assert plan_run(_run({**HF, "max_steps": "2000"}), s).fp != ok.fp


def test_skips_are_kinds_and_the_written_text_opens_with_the_kind() -> None:
    s = SyncSettings()
    kinds = {"no schedule": plan_run(_run({"seed": "1"}), s),
             "bad config": plan_run(_run({**HF, "warmup_steps": "-5"}), s),
             "done": plan_run(_run(HF, latest={"loss": Watermark(1000)}), s),
             "no data": plan_run(_run(HF, latest={}), s)}
    for word, p in kinds.items():
        assert p.skip.kind == SkipKind(word) and p.reason == str(p.skip) and p.reason.startswith(word + ": ")
    # forecaster.scaling.sync takes a run whose forecast.skipped starts with "done" as finished
    assert kinds["done"].skip.kind is SkipKind.DONE and kinds["done"].reason.startswith("done")
    outcomes = [RunOutcome(p.run, Action.SKIPPED, p.skip) for p in kinds.values()]
    outcomes.append(RunOutcome(_run(HF, status=FINISHED), Action.CONTEXT))
    rep = SyncReport(outcomes=outcomes)
    assert "4 skipped (no schedule x1, bad config x1, done x1, no data x1)" in rep.summary()
    assert len(rep.by("skipped")) == 4 and rep.by(Action.CONTEXT)[0].line() == "r (abc123): context (finished)"


def test_groups_by_experiment_or_param() -> None:
    r = _run({**HF, "size": "1b"}, status=FINISHED)
    assert group_of(r, None) == "7"
    assert group_of(r, "params.size") == "7/params.size=1b"
    assert group_of(r, "size") == group_of(_run({"size": "1b"}), "size")


def test_follow_siblings_flows_from_the_config_file_and_the_flag(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    import forecaster.sync as sync_mod
    from forecaster.sync import cli as sync_cli
    from forecaster.cli import main

    class Tracker:  # stands in for the adapter: only the settings the engine receives matter here
        options = ()

        def __init__(self, **kw) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> bool:
            return False

        def identity(self) -> list[str]:
            return ["stand-in"]

    class Report:
        outcomes: list = []

        def summary(self) -> str:
            return "ok"

    seen: list[SyncSettings] = []
    monkeypatch.setattr(sync_cli.trackers, "load", lambda name: Tracker)
    monkeypatch.setattr(sync_mod, "sync", lambda tracker, settings, on_outcome=None: seen.append(settings) or Report())
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sync]\nfollow_siblings = false\n")
    lock = ["--lock-file", str(tmp_path / "lock")]
    for args in ([], ["--config", str(cfg)], ["--config", str(cfg), "--follow-siblings"]):
        res = CliRunner().invoke(main, ["sync", *lock, *args])
        assert res.exit_code == 0, res.output
    assert [s.forecaster_options for s in seen] == [{}, {"follow_siblings": False}, {"follow_siblings": True}]
    assert seen[0].token() != seen[1].token()  # switching it re-forecasts every run

"""The forecast as a person sees it: the MLflow UI in headless Chromium, on runs seeded like `make demo`.

Opens the experiment at the URL `forecast sync` prints (the forecaster's shared band view) and
reads the `loss` chart: each running run's real curve, its forecast continuing it and the forecast's
p10-p90 band must be drawn there without expanding, selecting or configuring anything. The plain
chart view, without the band view, must still draw each forecast. The screenshot is the README's and
the cron page's picture (FORECAST_SCREENSHOT=path writes it there).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")

from click.testing import CliRunner  # noqa: E402

from forecaster.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import demo  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Debian's Chromium as root in a closed network: no sandbox, no background connections
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def synced(mlflow_server):
    exp = demo.seed(mlflow_server.uri, experiment="ui-demo")
    _URI[:] = [mlflow_server.uri]
    res = CliRunner().invoke(main, ["sync", "--tracker", "mlflow", "--tracking-uri", mlflow_server.uri,
                                    "--experiment", "ui-demo", "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    key = "forecasts beside the real curves: "
    (url,) = [line.split(key, 1)[1] for line in res.output.splitlines() if key in line]
    return exp, url


# Every line chart on the page as plotly holds it: the chart's keys and, per trace, the run name,
# metric key, dash, point count, first and last point (the UI keeps run and key on each trace).
CHARTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => ({
    keys: Array.from(new Set((d.data || []).map(t => t.metricKey))),
    traces: (d.data || []).filter(t => t.metricKey).map(t => ({
        run: t.name, key: t.metricKey, dash: (t.line || {}).dash || 'solid', n: (t.x || []).length,
        x: (t.x || []).slice(0, 1).concat((t.x || []).slice(-1)),
        y: (t.y || []).slice(0, 1).concat((t.y || []).slice(-1)),
        opacity: t.opacity === undefined ? 1 : t.opacity})),
}))"""


def _loss_chart(page) -> list[dict]:
    """The traces of the one chart that draws `loss` (the band view's chart of loss and its band)."""
    charts = [c for c in page.evaluate(CHARTS_JS) if "loss" in c["keys"]]
    assert len(charts) == 1, [c["keys"] for c in charts]
    return charts[0]["traces"]


def _cooled(exp: str) -> dict[str, tuple[int, int]]:
    """Runs the sync gave "cooling down now": name -> (last observed step, cooldown length)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(_URI[0])
    out = {}
    for r in client.search_runs([exp]):
        t = r.data.tags
        if "forecast.if_cooldown_now.length" in t and "forecast.kind" not in t:  # a source run, not its forecast
            last = int(t["forecast.watermark"].split("@")[1])
            out[r.info.run_name] = (last, int(t["forecast.if_cooldown_now.length"]))
    return out


_URI: list[str] = []


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_printed_url_draws_each_forecast_and_its_band_on_the_loss_chart(synced, tmp_path) -> None:
    exp, url = synced
    assert url.endswith(f"/#/experiments/{exp}/runs?compareRunsMode=CHART&viewStateShareKey=forecast-bands")
    running = [name for name, _, _, _, status, _ in demo.RUNS if status == "RUNNING"]
    shot = Path(os.environ.get("FORECAST_SCREENSHOT") or tmp_path / "mlflow-ui.png")
    with playwright.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            # the chart's legend names drawn series "<run> (<key>)" (the first few of them)
            for key in ("loss", "loss.p10", "loss.p90"):
                page.get_by_text(f" forecast ({key})").first.wait_for(timeout=60_000)
            page.wait_for_function(  # every series fetched and drawn: each run's loss, each forecast's band
                "n => Array.from(document.querySelectorAll('.js-plotly-plot')).some(d => new Set((d.data || [])"
                ".filter(t => t.metricKey && (t.x || []).length).map(t => t.name + '|' + t.metricKey)).size >= n)",
                arg=len(demo.RUNS) + 3 * len(running) + len(_cooled(exp)), timeout=60_000)
            traces = _loss_chart(page)
            drawn = {(t["run"], t["key"]): t for t in traces if t["n"] and t["opacity"] > 0}
            for name in running:
                real, p50 = drawn[(name, "loss")], drawn[(f"{name} forecast", "loss")]
                lo, hi = drawn[(f"{name} forecast", "loss.p10")], drawn[(f"{name} forecast", "loss.p90")]
                # the forecast continues the real curve: it starts where the observed one ends
                assert p50["x"][0] == real["x"][-1] or 0 < p50["x"][0] - real["x"][-1] <= 0.02 * real["x"][-1]
                # the band spans the same steps, drawn as its edges in other dashes than the curve
                assert lo["x"] == p50["x"] and hi["x"] == p50["x"]
                assert lo["dash"] != p50["dash"] and hi["dash"] != p50["dash"]
                assert lo["y"][-1] < p50["y"][-1] < hi["y"][-1]
            # runs at constant LR: "cooling down now" on the same chart, from the same join to the
            # cooldown's end (forecast.if_cooldown_now.length steps on)
            cooled = _cooled(exp)
            assert cooled and set(cooled) < set(running)
            for name, (start, length) in cooled.items():
                now, p50 = drawn[(f"{name} forecast", "loss.if_cooldown_now")], drawn[(f"{name} forecast", "loss")]
                assert now["x"][0] == p50["x"][0] and now["x"][-1] == start + length
                assert now["dash"] not in (drawn[(f"{name} forecast", "loss.p10")]["dash"],
                                           drawn[(f"{name} forecast", "loss.p90")]["dash"])
            # finished runs are drawn, but get no forecast and no band
            assert ("cosine-24k", "loss") in drawn
            assert not [k for k in drawn if k[0] == "cosine-24k forecast" or (not k[0].endswith("forecast")
                                                                              and k[1] != "loss")]
            # the band has no charts of its own in this view
            keys = {k for c in page.evaluate(CHARTS_JS) for k in c["keys"]}
            assert {"loss.p10", "loss.p90"} <= keys
            assert not [c for c in page.evaluate(CHARTS_JS) if "loss" not in c["keys"] and
                        {"loss.p10", "loss.p90", "loss.if_cooldown_now"} & set(c["keys"])]
            page.wait_for_timeout(1500)  # let the last chart finish drawing for the picture
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_plain_chart_view_still_draws_each_forecast_beside_its_run(synced) -> None:
    exp, url = synced
    plain = url.split("&viewStateShareKey=")[0]
    running = [name for name, _, _, _, status, _ in demo.RUNS if status == "RUNNING"]
    with playwright.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(plain)
            for name in running:
                page.get_by_text(f"{name} forecast (loss)", exact=True).first.wait_for(timeout=60_000)
                page.get_by_text(f"{name} (loss)", exact=True).first.wait_for(timeout=60_000)
            assert page.get_by_text("cosine-24k (loss)", exact=True).count() >= 1
            assert page.get_by_text("cosine-24k forecast (loss)", exact=True).count() == 0
        finally:
            browser.close()

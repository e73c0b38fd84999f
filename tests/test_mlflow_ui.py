"""The forecast as a person sees it: the MLflow UI in headless Chromium, on runs seeded like `make demo`.

Opens the experiment at the URL `forecast sync` prints and reads the default `loss` chart's legend:
each running run's forecast must be drawn there without expanding, selecting or configuring
anything. The screenshot is the README's and the cron page's picture (FORECAST_SCREENSHOT=path
writes it there).
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
    res = CliRunner().invoke(main, ["sync", "--tracker", "mlflow", "--tracking-uri", mlflow_server.uri,
                                    "--experiment", "ui-demo", "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    key = "forecasts beside the real curves: "
    (url,) = [line.split(key, 1)[1] for line in res.output.splitlines() if key in line]
    return exp, url


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_default_chart_view_draws_each_forecast_beside_its_run(synced, tmp_path) -> None:
    exp, url = synced
    assert url.endswith(f"/#/experiments/{exp}/runs?compareRunsMode=CHART")
    running = [name for name, _, _, _, status, _ in demo.RUNS if status == "RUNNING"]
    shot = Path(os.environ.get("FORECAST_SCREENSHOT") or tmp_path / "mlflow-ui.png")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            # the legend of the `loss` chart names every drawn series "<run> (<key>)"
            for name in running:
                page.get_by_text(f"{name} forecast (loss)", exact=True).first.wait_for(timeout=60_000)
                page.get_by_text(f"{name} (loss)", exact=True).first.wait_for(timeout=60_000)
            # finished runs are drawn, but get no forecast
            assert page.get_by_text("cosine-24k (loss)", exact=True).count() >= 1
            assert page.get_by_text("cosine-24k forecast (loss)", exact=True).count() == 0
            page.wait_for_timeout(1500)  # let the last chart finish drawing for the picture
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000

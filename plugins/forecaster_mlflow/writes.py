"""Writing to MLflow: forecast and summary runs beside the source, tags on it, and the experiment's UI setup.

Every call names its run explicitly through `MlflowClient`; source runs only ever receive tags
(`log_batch` with tags leaves status and end time alone).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
import numpy as np

from forecaster import tags as tag_keys
from forecaster.trackers import ForecastRevision, RunGone, RunInfo, SummaryRevision, TrackerError
from forecaster_mlflow.client import clip, first_line
from forecaster_mlflow.view import (
    COLOR_TAG, KIND_TAG, KIND_TRAINING, VIEW_TAG, band_view_state, encode_view_state, run_color, view_keys,
)

log = logging.getLogger(__name__)

# metrics one log_batch may carry; the server stores them in one transaction (all drawn or none)
MAX_BATCH = 1000


class ForecastWrites:
    """The writing half of `MlflowTracker` (it provides ``client``, ``_call`` and the experiment state)."""

    def _prepare_experiment(self, scope: str, keys: Sequence[str]) -> None:
        """Before the first forecast into an experiment: its kind, and a band view drawing `keys`.

        MLflow 3 opens an experiment without a kind on the GenAI overview, so one with no kind is
        marked as model training; one the user (or MLflow) gave a kind keeps it. The band view tag
        is ours alone: written when missing, rewritten only to add keys it does not draw yet.
        Both are cosmetic, so a failure is logged and the forecast goes on.
        """
        with self._exp_lock:
            if scope in self._unprepared or (
                    scope in self._prepared and set(keys) <= self._view_keys.get(scope, frozenset())):
                return
            self._prepared.add(scope)
            try:
                tags = self.client.get_experiment(scope).tags
                if not tags.get(KIND_TAG):
                    self.client.set_experiment_tag(scope, KIND_TAG, KIND_TRAINING)
                have = view_keys(tags.get(VIEW_TAG))
                if VIEW_TAG in tags and not have:
                    # not a state we wrote (a hand-made tag under our key?): leave it as it is
                    self._view_keys[scope] = frozenset()
                    self._unprepared.add(scope)
                    return
                want = have | set(keys)
                if want != have:
                    self.client.set_experiment_tag(scope, VIEW_TAG, encode_view_state(band_view_state(sorted(want))))
                self._view_keys[scope] = frozenset(want)
            except Exception as e:  # noqa: BLE001 - cosmetic; the write of the forecast reports real failures
                self._unprepared.add(scope)  # once per sync: a refusal (permissions) would only repeat
                log.debug("could not prepare experiment %s for the UI: %s", scope, first_line(e))

    def create_forecast(self, revision: ForecastRevision) -> str:
        """Create the forecast run, then log every point in one batch, then mark it finished.

        The server stores one batch's metrics in one transaction, so the UI draws all of the
        forecast or none of it; the run counts as complete (`list_runs`) only once FINISHED.
        """
        from mlflow.entities import Metric

        src = revision.source
        self._prepare_experiment(src.scope, [*revision.curves, *revision.whatif])
        tags = {tag_keys.KIND: tag_keys.KIND_FORECAST, tag_keys.SOURCE: src.id,
                COLOR_TAG: run_color(src.id, src.tags), tag_keys.INPUT: revision.input, "mlflow.note.content":
                f"Forecast of run {src.name} ({src.id}) made by forecaster; superseded revisions are deleted."}
        tags.update({k: clip(v) for k, v in revision.tags.items()})
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(v), now, int(s)) for key, steps, values in revision.series(MAX_BATCH)
                   for s, v in zip(steps, values)]
        made = self._call(f"creating the forecast run of {src.id}", self.client.create_run, src.scope,
                           tags=tags, run_name=revision.name or f"{src.name} forecast")
        cid = made.info.run_id
        try:
            if revision.plot_png:
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, revision.plot_name)
                    with open(path, "wb") as f:
                        f.write(revision.plot_png)
                    self._call(f"uploading the plot of {src.id}", self.client.log_artifact, cid, path)
            self._call(f"logging the forecast of {src.id}", self.client.log_batch, cid, metrics=metrics)
            self._call(f"finishing the forecast run of {src.id}", self.client.set_terminated, cid, "FINISHED")
        except BaseException:
            # best effort: an unfinished forecast run must not linger beside the live one
            try:
                self.client.delete_run(cid)
            except Exception:  # noqa: BLE001 - the tracker may be gone; the next sync removes it
                log.debug("could not remove the unfinished forecast run %s", cid)
            raise
        return cid

    def set_tags(self, run: RunInfo, tags: Mapping[str, str | None]) -> None:
        """Upsert tags with log_batch (status and end time stay); a None value deletes the tag."""
        from mlflow.entities import RunTag

        put = [RunTag(k, clip(v)) for k, v in tags.items() if v is not None]
        for i in range(0, len(put), 100):
            self._call(f"tagging run {run.id}", self.client.log_batch, run.id, tags=put[i:i + 100])
        for k, v in tags.items():
            if v is None and k in run.tags:
                try:
                    self._call(f"untagging run {run.id}", self.client.delete_tag, run.id, k)
                except RunGone:
                    raise
                except TrackerError as e:
                    if "No tag with name" not in str(e):
                        raise

    def stop_run(self, run: RunInfo) -> str:
        """MLflow cannot stop a run remotely: tag it ``forecast.stop_requested=true`` (status untouched).

        The training loop (or a person) can poll the tag; setting the status to KILLED ourselves
        would only hide a process that keeps training.
        """
        self.set_tags(run, {tag_keys.STOP: "true"})
        msg = (f"MLflow cannot stop run {run.label} remotely: tagged {tag_keys.STOP}=true "
               "(its status is left unchanged; stop the training process yourself)")
        log.warning(msg)
        return msg

    def delete_forecast(self, run: RunInfo, forecast_id: str) -> None:
        try:
            self._call(f"deleting forecast run {forecast_id}", self.client.delete_run, forecast_id)
        except RunGone:
            pass  # already gone: the goal state

    def create_summary(self, revision: SummaryRevision) -> str:
        """A top-level run in the experiment: params, tags, step-0 metrics, artifacts, then FINISHED.

        On failure the unfinished run is
        removed (best effort) and the error raised, so a listed summary run is always complete.
        """
        from mlflow.entities import Metric, Param

        tags = {"mlflow.note.content": f"{revision.name}: written by forecaster sync; superseded revisions "
                                       "are deleted.", **{k: clip(v) for k, v in revision.tags.items()},
                tag_keys.KIND: revision.kind, tag_keys.INPUT: revision.input}
        run = self._call(f"creating the summary run of experiment {revision.scope}", self.client.create_run,
                         revision.scope, tags=tags, run_name=revision.name)
        rid = run.info.run_id
        try:
            now = int(time.time() * 1000)
            params = [Param(k, clip(v)[:500]) for k, v in revision.params.items()]
            metrics = [Metric(k, float(v), now, 0) for k, v in revision.metrics.items() if np.isfinite(v)]
            for i in range(0, max(len(params), len(metrics)), 100):
                self._call(f"logging the summary of experiment {revision.scope}", self.client.log_batch, rid,
                           metrics=metrics[i:i + 100], params=params[i:i + 100])
            if revision.artifacts:
                with tempfile.TemporaryDirectory() as tmp:
                    for name, data in revision.artifacts.items():
                        path = os.path.join(tmp, name)
                        with open(path, "wb") as f:
                            f.write(data)
                        self._call(f"uploading {name} of experiment {revision.scope}", self.client.log_artifact,
                                   rid, path)
            self._call(f"finishing the summary run of experiment {revision.scope}", self.client.set_terminated,
                       rid, "FINISHED")
        except BaseException:
            try:
                self.client.delete_run(rid)
            except Exception:  # noqa: BLE001 - the next sync removes an unfinished summary run
                log.debug("could not remove the unfinished summary run %s", rid)
            raise
        return rid

    def delete_summary(self, summary: RunInfo) -> None:
        try:
            self._call(f"deleting summary run {summary.id}", self.client.delete_run, summary.id)
        except RunGone:
            pass

"""How the MLflow client is called: its HTTP defaults, its limits, and its failures in our words."""

from __future__ import annotations

from typing import Any

from forecaster.redact import redact

# MLflow retries a refused connection 7 times with a 2 s backoff factor by default (minutes):
# a cron job should fail within seconds and try again at its next tick. Users may override.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
MAX_TAG_VALUE = 5000  # MLflow 2.x rejects longer tag values (3.x: 8000)


def is_gone(err: BaseException) -> bool:
    """True when MLflow refused because the run is deleted or does not exist."""
    code = getattr(err, "error_code", "")
    text = str(err)
    return code == "RESOURCE_DOES_NOT_EXIST" or "must be in the 'active' state" in text or (
        "not found" in text.lower() and "run" in text.lower())


_NET_ERRORS = (("Connection refused", "connection refused"), ("Name or service not known", "unknown host"),
               ("nodename nor servname", "unknown host"), ("timed out", "timed out"),
               ("Read timed out", "timed out"), ("RemoteDisconnected", "connection closed by the server"),
               ("Connection reset", "connection reset"), ("Max retries exceeded", "no answer after retries"),
               ("503", "service unavailable (503)"), ("502", "bad gateway (502)"))


def unreachable(text: str) -> str | None:
    """A short reason when an MLflow error is a transport failure (after MLflow's own retries)."""
    for needle, reason in _NET_ERRORS:
        if needle in text:
            return reason
    return None


def clip(v: Any) -> str:
    """A tag value as MLflow accepts it: cut to `MAX_TAG_VALUE` characters."""
    s = str(v)
    return s if len(s) <= MAX_TAG_VALUE else s[: MAX_TAG_VALUE - 3] + "..."


def first_line(e: BaseException) -> str:
    """The error's first line, credentials masked: MLflow and requests quote the URLs they called."""
    text = redact(str(e)).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 300 else line[:297] + "..."

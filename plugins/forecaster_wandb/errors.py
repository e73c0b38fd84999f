"""wandb client errors read for what the engine needs: the HTTP status, a gone run, one clear TrackerError."""

from __future__ import annotations

import re

from forecaster.errors import TrackerError
from forecaster.redact import redact


def http_status(err: BaseException) -> int | None:
    """HTTP status behind a wandb error, looking through CommError wrappers."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        resp = getattr(e, "response", None)
        status = getattr(resp, "http_status", None)
        if status:
            return int(status)
        e = getattr(e, "exc", None) or e.__cause__
    m = re.search(r"\bHTTP (\d{3})\b", str(err))  # errors from wandb.init carry it in the text only
    return int(m.group(1)) if m else None


def message(err: BaseException) -> str:
    """The error's text on one line, credentials masked (the client quotes the URLs it called)."""
    lines = [ln.strip() for ln in redact(str(err)).strip().splitlines() if ln.strip()]
    return "; ".join(lines)[:300] if lines else type(err).__name__


def is_gone(err: BaseException) -> bool:
    """True when the error says the run does not exist (HTTP 404, or the client's wording of it)."""
    if http_status(err) == 404:
        return True
    e: BaseException | None = err
    while e is not None:
        if type(e).__name__ == "RunNotFoundError" or "could not find run" in str(e).lower() \
                or "not found" in str(e).lower() and "run" in str(e).lower():
            return True
        e = getattr(e, "exc", None) or e.__cause__
    return False


def tracker_error(err: BaseException, what: str) -> TrackerError:
    """One TrackerError saying what failed while doing `what`, with a hint for credentials and rate limits."""
    status = http_status(err)
    if status in (401, 403):
        return TrackerError(f"W&B refused the credentials while {what} (HTTP {status}); "
                            "check WANDB_API_KEY / `wandb login` and the entity's permissions")
    if status == 429:
        return TrackerError(f"W&B kept rate-limiting while {what} (HTTP 429) after the client's "
                            "retries; try again later or lower --workers")
    detail = f"HTTP {status}: " if status else ""
    return TrackerError(f"W&B error while {what}: {detail}{message(err)}")

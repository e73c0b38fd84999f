"""The tracking URI as shown (credentials dropped) and the check that a local store exists."""

from __future__ import annotations

import os

from forecaster.errors import InputError
from forecaster.redact import mask_uri


def safe_uri(uri: str | None) -> str:
    """The tracking URI without credentials (user:password@ or a token in the query)."""
    if not uri:
        return "?"
    if "@" not in uri and "?" not in uri:
        return uri
    from urllib.parse import urlsplit, urlunsplit

    try:
        p = urlsplit(uri)
        netloc = p.hostname or ""
        if p.port:
            netloc += f":{p.port}"
    except ValueError:
        return mask_uri(uri)
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


def check_local_store(uri: str, canonical: str) -> None:
    """A local store (sqlite:///, file:, a path) must exist: MLflow would create an empty one at a typo."""
    if canonical.startswith("sqlite") and canonical.endswith("://"):
        return  # sqlite:// alone: in memory
    if canonical.startswith("sqlite"):
        path, what = canonical.split(":///", 1)[1], "SQLite file"
        exists = os.path.isfile(path)
    elif canonical.startswith("file://"):
        path, what = canonical[len("file://"):], "folder"
        exists = os.path.isdir(path)
    else:
        return
    if not exists:
        where = "its folder does not exist either" if not os.path.isdir(os.path.dirname(path) or ".") else \
            "no such file" if what == "SQLite file" else "no such folder"
        raise InputError(f"mlflow: no store at {mask_uri(uri)} ({what} {path}: {where}); forecast sync reads "
                         "an existing store and does not create one: check the path")

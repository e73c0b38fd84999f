"""Keep credentials out of everything the program prints: URIs masked, known secrets replaced.

A tracking URI may carry ``user:password@`` or a token in its query, a webhook URL carries its
token in the path; cron mails stderr and log files are read by many. So a URI is masked before it
goes into any message (`mask_uri`, which never raises, even on a URI too broken to parse), and
every line the command prints or logs passes through `redact`, which replaces the secrets
registered for this invocation (`register_uri`, `register`) and anything shaped like
credentials in a URL, in case a library's error quotes a URI we never saw.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from urllib.parse import parse_qsl, unquote

MASK = "***"
# credentials the tracker clients read from the environment (they can end up in error texts)
ENV_SECRETS = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "DATABRICKS_TOKEN", "WANDB_API_KEY")
# shorter strings would mask ordinary words and digits all over the output
_MIN_SECRET = 3

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(.*)$", re.S)
# in free text: "scheme://userinfo@" and a URL's query, whoever wrote the text
_TEXT_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@'\"]+@")
_TEXT_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s?#'\"]*)\?[^\s#'\"]*")

_lock = threading.Lock()
_secrets: set[str] = set()


def split_uri(uri: str) -> tuple[str, str, str, str] | None:
    """(scheme, authority, rest of the path, query-and-fragment) of `scheme://...`, or None.

    Done by hand rather than with urlsplit: this must work on what urlsplit rejects. The
    authority runs to the last "@" before the path's query so that a password holding "/" is
    still read as part of it.
    """
    m = _SCHEME.match(uri)
    if not m or not m.group(2).startswith("//"):
        return None
    scheme, body = m.group(1), m.group(2)[2:]
    cut = min([i for i in (body.find("?"), body.find("#")) if i >= 0], default=len(body))
    head, tail = body[:cut], body[cut:]
    at = head.rfind("@")
    slash = head.find("/", at + 1 if at >= 0 else 0)
    if slash < 0:
        slash = len(head)
    return scheme, head[:slash], head[slash:], tail


def mask_uri(uri: str | None) -> str:
    """`uri` with its user info and query values replaced by ***; safe on any text."""
    if not uri:
        return "?"
    uri = str(uri)
    parts = split_uri(uri)
    if parts is None:
        return _mask_query(uri)
    scheme, authority, path, tail = parts
    if "@" in authority:
        authority = f"{MASK}@{authority.rsplit('@', 1)[1]}"
    return f"{scheme}://{authority}{path}{_mask_query(tail)}"


def _mask_query(text: str) -> str:
    """Each query value (and a fragment) of `text` as ***, keeping the parameter names."""
    q = text.find("?")
    h = text.find("#")
    if h >= 0 and (q < 0 or h < q):
        return text[:h] + "#" + MASK
    if q < 0:
        return text
    head, query = text[:q], text[q + 1:]
    query, hashed, _ = query.partition("#")
    masked = "&".join(f"{p.split('=', 1)[0]}={MASK}" if "=" in p else MASK for p in query.split("&") if p)
    return f"{head}?{masked}" + (f"#{MASK}" if hashed else "")


def uri_secrets(uri: str | None) -> list[str]:
    """The parts of a URI that are secret: user info, password, query values, fragment."""
    if not uri:
        return []
    text = str(uri)
    out: list[str] = []
    parts = split_uri(text)
    if parts is not None:
        _, authority, _, tail = parts
        if "@" in authority:
            userinfo = authority.rsplit("@", 1)[0]
            out.append(userinfo)
            if ":" in userinfo:
                password = userinfo.split(":", 1)[1]
                out += [password, unquote(password)]  # an error may quote it encoded or decoded
    else:
        cut = min([i for i in (text.find("?"), text.find("#")) if i >= 0], default=len(text))
        tail = text[cut:]
    query = fragment = ""
    if tail.startswith("?"):
        query, _, fragment = tail[1:].partition("#")
    elif tail.startswith("#"):
        fragment = tail[1:]
    if query:
        out.append(query)
        # decoded and as written: an error may quote either
        out.extend(v for _, v in parse_qsl(query, keep_blank_values=True))
        out.extend(p.split("=", 1)[1] for p in query.split("&") if "=" in p)
    if fragment:
        out.append(fragment)
    return out


def register(*values: str | None) -> None:
    """Secrets to replace by *** in everything `redact` sees from now on (this process)."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET)


def register_uri(uri: str | None, *, path_is_secret: bool = False) -> None:
    """Register a URI's secret parts; `path_is_secret` for webhooks, whose path is the token."""
    register(*uri_secrets(uri))
    if path_is_secret and uri:
        parts = split_uri(str(uri))
        if parts is not None and len(parts[2]) > 1:
            register(parts[2], parts[2] + parts[3], str(uri))


def register_environment() -> None:
    """The credentials the tracker clients read from the environment."""
    register(*(os.environ.get(k) for k in ENV_SECRETS))


def redact(text: str) -> str:
    """`text` with every registered secret, URL user info and URL query replaced by ***."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for s in known:
        if s in text:
            text = text.replace(s, MASK)
    text = _TEXT_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _TEXT_QUERY.sub(lambda m: f"{m.group(1)}?{MASK}", text)


class RedactingFilter(logging.Filter):
    """A handler filter: the record's final text (message, arguments, traceback) redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: show its template, still redacted
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info:
            # the formatted traceback would bypass redaction: format it here and redact it
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


__all__ = ["MASK", "split_uri", "mask_uri", "uri_secrets", "register", "register_uri", "register_environment", "redact",
           "RedactingFilter"]

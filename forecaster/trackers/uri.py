"""One spelling of a tracker address, so that every way of writing it keys the same lock and state."""

from __future__ import annotations

import os
import re

from forecaster.errors import InputError
from forecaster.redact import mask_uri

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"^[a-z0-9_~%-]+(?:\.[a-z0-9_~%-]+)*\.?$")
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def canonical_uri(uri: str | None) -> str:
    """One spelling of a tracker address, for identity: never shown with credentials, never raises but InputError.

    Scheme and host lowercased, a default port dropped, no trailing slash, no user info, query
    or fragment; a local store (plain path, ``file:``, ``sqlite:///``) as an absolute path. A URI
    that cannot be a network address (a space in the host, a port that is not a number in
    1-65535) is bad input, reported with the URI masked.
    """
    from urllib.parse import urlsplit

    if not uri:
        return ""
    text = str(uri).strip()
    m = _URI_SCHEME.match(text)
    if not m or (len(m.group(1)) == 1 and os.name == "nt"):  # a path (C:\ on Windows)
        if text.lower() in ("databricks", "databricks-uc"):  # MLflow's names, not paths
            return text.lower()
        return "file://" + _abs_path(text)
    scheme = m.group(1).lower()
    rest = text[m.end():]
    if scheme == "file" or scheme.startswith("sqlite"):
        path = rest[2:] if rest.startswith("//") else rest
        path = re.split(r"[?#]", path, maxsplit=1)[0]
        if scheme.startswith("sqlite"):
            # sqlite:///relative.db, sqlite:////absolute.db; sqlite:// alone is in memory
            path = path[1:] if path.startswith("/") else path
            return f"{scheme}:///{_abs_path(path)}" if path and path != ":memory:" else f"{scheme}://"
        return "file://" + _abs_path(path)
    if not rest.startswith("//"):  # databricks, databricks-uc, a profile name
        return f"{scheme}:{rest.rstrip('/')}"
    bad = f"tracking URI {mask_uri(text)}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        reason = "a port must be a number from 1 to 65535" if "port" in str(e).lower() else "malformed"
        raise InputError(f"{bad} is not a valid address: {reason}") from None
    host = (parts.hostname or "").lower()
    if scheme in _DEFAULT_PORTS or host:
        if not host:
            raise InputError(f"{bad} is not a valid address: no host name")
        if not (_HOST.match(host) or _is_ip6(host)) or any(c.isspace() for c in parts.netloc):
            raise InputError(f"{bad} is not a valid address: the host name {mask_uri(host)!r} holds characters "
                             "a host name cannot have")
        if port == 0:
            raise InputError(f"{bad} is not a valid address: a port must be a number from 1 to 65535")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _is_ip6(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _abs_path(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else ""

"""A database URL as it may be shown: in a message, a log line or the upgrade command's output."""

from __future__ import annotations

import urllib.parse

SECRET_PARAMETERS = {"password", "passfile", "sslpassword", "sslkey"}


def without_secrets(url: str) -> str:
    """`url` with its password, and any secret query parameter libpq accepts, replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    parameters = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and not any(name.lower() in SECRET_PARAMETERS for name, _ in parameters):
        return url  # as it was: urlunsplit would also drop a sqlite:////path's empty host
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = urllib.parse.urlencode(
        [(name, "***" if name.lower() in SECRET_PARAMETERS else value) for name, value in parameters],
        safe="*",
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))

"""Camera URLs and credentials: redaction for logs, credentials secrets parsed and injected at connect."""

from __future__ import annotations

import json
from urllib.parse import quote, urlsplit, urlunsplit

from ..config.capture import redact_url  # the configuration redacts its own repr and errors with it

__all__ = ["parse_credentials", "redact_url", "with_credentials"]


def parse_credentials(value: str) -> tuple[str, str]:
    """A secret value as (user, password): either `user:password` or JSON {"username", "password"}."""
    text = value.rstrip("\r\n")  # secret files often end with a newline; anything else is the password
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"credentials secret is not valid JSON (line {e.lineno})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("username"), str) or "password" not in obj:
            raise ValueError('credentials secret JSON must be {"username": ..., "password": ...}')
        return obj["username"], str(obj["password"])
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ValueError("credentials secret must be 'user:password' or JSON {username, password}")
    return user, password


def with_credentials(url: str, user: str, password: str) -> str:
    """`url` with percent-encoded credentials injected (replacing any user already in it)."""
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

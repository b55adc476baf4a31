"""Upstream paths built from a client's path: encoded so every character means itself, and kept under
the provider's base path (issue 13, finding 13: ``/openai/..%2f..%2fx`` reached ``/x`` with our key)."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

__all__ = ["contained_path", "encode_path"]

# RFC 3986 pchar and "/", without "%": a "%" in a decoded path is the client's own (it sent "%25").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
# "." or ".." as a whole segment, "\" counted as a separator and ";params" ignored, as some servers do.
_DOT_SEGMENT = re.compile(r"(?:^|[/\\])\.\.?(?:;[^/\\]*)?(?=[/\\]|$)")
_MAX_DECODES = 4  # nothing legitimate nests escapes deeper ("%252e" is two)
# Both run per upstream attempt: results are cached per path (paths repeat: they vary by model at most
# on LLM routes), for paths short enough that the cache stays small.
_CACHE_SIZE = 1024
_CACHED_LENGTH = 512
_encoded: dict[str, str] = {}
_contained: dict[str, bool] = {}


def encode_path(decoded: str) -> str:
    """A decoded path (ASGI's ``path``) percent-encoded for a URL: an encoded ``?``, ``#`` or ``%``
    the client sent stays data instead of starting a query, a fragment or an escape."""
    encoded = _encoded.get(decoded)
    if encoded is None:
        encoded = quote(decoded, safe=_PATH_SAFE)
        if len(decoded) <= _CACHED_LENGTH:
            if len(_encoded) >= _CACHE_SIZE:
                _encoded.clear()  # paths vary by model and resource id: a bound, not an eviction policy
            _encoded[decoded] = encoded
    return encoded


def contained_path(path: str) -> bool:
    """Whether ``path`` (percent-encoded) appended to a base URL stays under the base path: it starts
    with ``/`` (or is empty), has no raw ``?`` or ``#``, and no dot segment however often an upstream
    or a proxy in between decodes it (``%2e%2e``, ``%252e%252e``, ``..%5c``, ``..;``)."""
    contained = _contained.get(path)
    if contained is None:
        contained = _check(path)
        if len(path) <= _CACHED_LENGTH:
            if len(_contained) >= _CACHE_SIZE:
                _contained.clear()
            _contained[path] = contained
    return contained


def _check(path: str) -> bool:
    if path and path[0] != "/":
        return False
    if "?" in path or "#" in path:
        return False
    text = path
    for _ in range(_MAX_DECODES):
        if "%" not in text:
            break
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    else:
        return False
    return "." not in text or _DOT_SEGMENT.search(text) is None

"""Which client request headers go upstream with our credentials.

A client must not be able to change who the provider thinks is calling, or where it routes the call:
one request with ``OpenAI-Organization: org-bogus`` answered 401 and took the gateway's key away from
every client (issue 13). So besides our own credentials and hop-by-hop headers, headers naming an
identity or a network path are withheld unless ``routing.forward_headers`` lists them; and a value that
is not UTF-8 is dropped, because no transport sends it byte for byte (aiohttp re-encodes header text as
UTF-8), so a signature over it (Bedrock's SigV4) would not match what arrives.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from llm_obs_middleware.errors import ConfigurationError
from llm_obs_middleware.routing.capacity import UpstreamSlots
from llm_obs_middleware.upstream.client import HOP_BY_HOP, Upstream

__all__ = ["IDENTITY_HEADERS", "NOT_FORWARDED", "HeaderFilter", "Outbound"]

# Client headers never forwarded: credentials meant for us, hop-by-hop, and ones we set ourselves.
NOT_FORWARDED = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"authorization",
    b"proxy-authorization",
    b"api-key",
    b"x-api-key",
    b"x-goog-api-key",
    b"cookie",
    b"accept-encoding",
    b"traceparent",
    b"tracestate",
    b"x-llm-obs-provider",
    b"x-llm-obs-no-fallbacks",
    b"x-llm-obs-timeout",
}
# Withheld unless configured: they change the caller's identity or the request's network path upstream.
IDENTITY_HEADERS = frozenset(
    {b"openai-organization", b"openai-project", b"forwarded", b"x-real-ip", b"x-amz-security-token"}
)
_FORWARDED_PREFIX = b"x-forwarded-"


class HeaderFilter:
    """The client headers to send upstream, per ``routing.forward_headers`` (checked once, here)."""

    __slots__ = ("_allowed_forwarded", "_dropped")

    def __init__(self, forward: Sequence[str] = ()) -> None:
        allowed = {name.strip().lower().encode("latin-1") for name in forward}
        never = sorted(name.decode() for name in allowed & NOT_FORWARDED)
        if never:
            raise ConfigurationError(
                f"routing.forward_headers: {', '.join(never)} is never forwarded "
                "(credentials, hop-by-hop and headers the gateway sets itself)"
            )
        self._dropped = NOT_FORWARDED | (IDENTITY_HEADERS - allowed)
        self._allowed_forwarded = frozenset(name for name in allowed if name.startswith(_FORWARDED_PREFIX))

    def __call__(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        dropped = self._dropped
        kept: list[tuple[bytes, bytes]] = []
        connection: bytes | None = None
        for name, value in headers:
            if name in dropped:
                if name == b"connection":
                    connection = value if connection is None else connection + b"," + value
                continue
            if name.startswith(_FORWARDED_PREFIX) and name not in self._allowed_forwarded:
                continue
            if not value.isascii() and not _is_utf8(value):
                continue
            kept.append((name, value))
        if connection is not None:  # RFC 9110 section 7.6.1: headers named in Connection are hop-by-hop too
            named = {token.strip().lower() for token in connection.split(b",")}
            kept = [(name, value) for name, value in kept if name not in named]
        return kept


class Outbound(NamedTuple):
    """The router's way upstream, built once and shared by every request it forwards (routed or
    passthrough): the client, its slots, the header filter and the randomness of key picks."""

    upstream: Upstream
    slots: UpstreamSlots
    forward: HeaderFilter
    rng: random.Random


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True

"""Undoing a content coding the gateway did not ask for, as the bytes arrive, in bounded pieces.

The gateway asks every upstream for ``accept-encoding: identity``: it observes the bytes it forwards.
A server that compresses anyway (gzip, deflate) would otherwise leave accounting with bytes it cannot
read (the usage lost, tokens estimated) and translators with bytes they cannot translate. So the answer
is decoded where it enters, and travels on as the identity answer the gateway asked for. Codings we
cannot decode (``br``, ``zstd``) pass through unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from llm_obs_middleware.errors import UpstreamProtocolError

__all__ = ["DECODABLE", "inflate"]

DECODABLE = frozenset({b"gzip", b"x-gzip", b"deflate"})
"""``content-encoding`` values decoded here."""
_PIECE = 256 * 1024  # the most decoded bytes held at once: a small gzip bomb cannot become one huge chunk
_AUTO_HEADER = zlib.MAX_WBITS | 32  # a gzip or a zlib header, whichever the body has


async def inflate(chunks: AsyncIterator[bytes], *, provider: str) -> AsyncIterator[bytes]:
    """``chunks`` decoded (gzip, or deflate in its zlib wrapping); several gzip members in a row are one body."""
    decoder = zlib.decompressobj(_AUTO_HEADER)
    try:
        async for chunk in chunks:
            data = chunk
            while data:
                piece = decoder.decompress(data, _PIECE)
                if piece:
                    yield piece
                if decoder.unconsumed_tail:
                    data = decoder.unconsumed_tail
                elif decoder.eof and decoder.unused_data:  # the next gzip member
                    data = decoder.unused_data
                    decoder = zlib.decompressobj(_AUTO_HEADER)
                else:
                    data = b""
        rest = decoder.flush()
        if rest:
            yield rest
    except zlib.error as exc:
        raise UpstreamProtocolError(
            f"provider {provider!r} sent a body its content-encoding does not decode: {exc}", provider=provider
        ) from None

"""Images in captured messages as references: a URL as sent, or the digest and size of inline data.

Captured content never holds image bytes (they would swamp every sink); a digest still lets a reader
tell whether two requests sent the same image. Only runs when content capture is on.
"""

from __future__ import annotations

import binascii
import hashlib
from urllib.parse import unquote_to_bytes

from llm_obs_middleware.records.schema import ImageRef

__all__ = ["inline_image", "url_image"]


def inline_image(data: str | bytes, media_type: str | None) -> ImageRef:
    """An image sent inline as base64 text: ``sha256:<hex>`` of the decoded bytes and their size."""
    try:
        raw = binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        raw = data.encode() if isinstance(data, str) else data  # not base64 after all: digest what was sent
    return _digest(raw, media_type)


def _digest(raw: bytes, media_type: str | None) -> ImageRef:
    return ImageRef(ref="sha256:" + hashlib.sha256(raw).hexdigest(), media_type=media_type, size_bytes=len(raw))


def url_image(url: str, media_type: str | None = None) -> ImageRef:
    """An image given by URL; a ``data:`` URL (OpenAI, Cohere) is inline data and is digested instead."""
    if url.startswith("data:"):
        header, _, payload = url[5:].partition(",")  # data:[<media type>][;param=value]*[;base64],<data>
        kind = header.partition(";")[0] or media_type
        if header.endswith(";base64"):
            return inline_image(payload, kind)
        return _digest(unquote_to_bytes(payload), kind)  # percent-encoded data
    return ImageRef(ref=url, media_type=media_type)

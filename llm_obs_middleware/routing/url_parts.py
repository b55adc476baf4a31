"""Refusing client text that cannot become part of an upstream URL: control characters, excessive length.

A native route's path and a model name end up in the upstream URL. httpx and aiohttp raise on CR, LF,
NUL and the like, and on URLs past 64 KB, which used to surface as a 500 with a stack trace; refusing
them first gives the client a 400/414 that names the problem. Path normalisation is another concern
(the passthrough and traversal checks): this module only says whether the text can be sent at all.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from llm_obs_middleware.asgi.aliases import Send
from llm_obs_middleware.asgi.messages import error_json, send_json

__all__ = ["MAX_URL_PART", "UnusableURLPart", "refuse_url_part", "unusable_url_part"]

MAX_URL_PART = 8192
"""The longest path or model name sent upstream (common servers refuse request lines past 8 KB)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnusableURLPart(NamedTuple):
    """Why a path or model name cannot go upstream: the status to answer and a message."""

    status: int
    message: str


def unusable_url_part(what: str, text: str) -> UnusableURLPart | None:
    """``None`` when ``text`` (a path or a model name, named by ``what``) can be put in a URL."""
    if len(text) > MAX_URL_PART:
        return UnusableURLPart(414, f"{what} is longer than {MAX_URL_PART} characters")
    if text.isprintable():  # no control character (the usual case, without a regex search)
        return None
    found = _CONTROL.search(text)
    if found is not None:
        return UnusableURLPart(400, f"{what} contains a control character ({found.group()!r})")
    return None


async def refuse_url_part(problem: UnusableURLPart, send: Send) -> None:
    """Answer the client with ``problem`` as a JSON error."""
    body = error_json(problem.message, "invalid_request_error", code="invalid_url")
    await send_json(send, problem.status, body)

"""Golden files for translation tests: expected JSON under ``golden/``, rewritten only on request.

Set ``LLM_OBS_UPDATE_GOLDEN=1`` to (re)write the files from the current output, then review the diff:
a missing or different file fails the test otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.providers.registry import adapter_for_kind
from llm_obs_middleware.providers.translators import ResponseContext, decode_chat_request, translator_for

from .._fixture_paths import PROVIDER_FIXTURES

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
REQUESTS = HERE / "fixtures"
SHARED = PROVIDER_FIXTURES
CREATED = 1_760_000_000  # the ``created`` every translated response carries in these tests


def context(include_usage: bool = False, model: str = "the-deployment-model") -> ResponseContext:
    """What the router tells a translator: ``created``, and the model and id for answers naming none."""
    return ResponseContext(CREATED, model, "chatcmpl-request-1", include_usage)


def check_golden(name: str, actual: Any) -> None:
    """``actual`` (JSON-able) must equal ``golden/<name>.json``."""
    path = GOLDEN / f"{name}.json"
    if os.environ.get("LLM_OBS_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    assert path.exists(), f"{path} is missing: run with LLM_OBS_UPDATE_GOLDEN=1 and review it"
    assert actual == json.loads(path.read_text()), f"translation differs from {path}"


def sse_events(data: bytes) -> tuple[list[Any], bool]:
    """The JSON payloads of an OpenAI SSE body and whether it ended with ``data: [DONE]``."""
    events: list[Any] = []
    done = False
    for block in data.split(b"\n\n"):
        if not block:
            continue
        assert block.startswith(b"data: "), block
        payload = block[6:]
        assert not done, "an event after [DONE]"
        if payload == b"[DONE]":
            done = True
        else:
            events.append(msgspec.json.decode(payload))
    return events, done


def shared_error(fixture: str, name: str) -> tuple[int, bytes, dict[str, str]]:
    """A shared ``error_*.json`` envelope as (status, body bytes, headers with lower-case names)."""
    envelope = json.loads((SHARED / fixture / name).read_text())
    headers = {k.lower(): v for k, v in envelope["headers"].items()}
    return envelope["status"], json.dumps(envelope["body"]).encode(), headers


_STREAM_REQUEST = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'


class TranslatedStream:
    """A provider stream translated as the router does it: the provider's stream observer decodes each
    chunk, the stream translator turns the events it decoded into OpenAI chunks."""

    def __init__(self, provider: str, include_usage: bool = False, *, context: ResponseContext | None = None) -> None:
        translator = translator_for(provider, "openai.chat_completions")
        assert translator is not None
        upstream = translator.request(decode_chat_request(_STREAM_REQUEST), "m", unsupported="drop")
        adapter = adapter_for_kind(provider)
        endpoint = adapter.match("POST", upstream.path.partition("?")[0])
        assert endpoint is not None
        self.decoder = adapter.observer(endpoint, Exchange({}), streamed=True, status=200)
        self.stream = translator.stream(context or golden_context(include_usage))
        self.stream.attach(self.decoder)

    def feed(self, chunk: bytes) -> bytes:
        self.decoder.feed(chunk, 0)
        return self.stream.take()

    def close(self) -> bytes:
        return self.stream.close()


golden_context = context

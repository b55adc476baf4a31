"""Azure OpenAI: the OpenAI wire format on deployment URLs, with an ``api-key`` header.

Native routes forward ``/{provider}/openai/deployments/{deployment}/chat/completions?api-version=...``
(and embeddings) as well as the v1 API ``/{provider}/openai/v1/...``; the deployment in the path is
the model. Routed by model from ``/v1/...``, a provider whose ``base_url`` ends in ``/openai/v1``
receives OpenAI-shaped requests unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote

from llm_obs_middleware.providers import _passthrough_endpoints
from llm_obs_middleware.providers.base import Endpoint
from llm_obs_middleware.providers.openai.adapter import CHAT, EMBEDDINGS, RESPONSES, OpenAIAdapter
from llm_obs_middleware.upstream.paths import encode_path

__all__ = ["AzureOpenAIAdapter"]

_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings|responses)$")
_V1 = {
    "/openai/v1/chat/completions": CHAT,
    "/openai/v1/responses": RESPONSES,
    "/openai/v1/embeddings": EMBEDDINGS,
    "/openai/responses": RESPONSES,
}
_BY_OPERATION = {"chat/completions": CHAT, "embeddings": EMBEDDINGS, "responses": RESPONSES}


class AzureOpenAIAdapter(OpenAIAdapter):
    """OpenAI payloads at Azure's paths; the key goes in ``api-key``."""

    passthrough_endpoints: Sequence[str] = _passthrough_endpoints.AZURE_OPENAI

    def __init__(self) -> None:
        super().__init__("azure.ai.openai")

    def match(self, method: str, path: str) -> Endpoint | None:
        if method != "POST":
            return None
        found = _DEPLOYMENT.match(path)
        if found is not None:
            return _BY_OPERATION[found.group(2)]
        return _V1.get(path) or super().match(method, path)

    def path_model(self, endpoint: Endpoint, path: str) -> str | None:
        found = _DEPLOYMENT.match(path)
        return found.group(1) if found is not None else None

    def upstream_path(self, endpoint: Endpoint, path: str, model: str) -> str:
        found = _DEPLOYMENT.match(path)
        if found is None or found.group(1) == model:
            return encode_path(path)
        return f"/openai/deployments/{quote(model, safe='')}/{found.group(2)}"

    def passthrough_path(self, path: str) -> str:
        return encode_path(path)  # Azure paths carry no /v1 of the base_url's

    def auth_headers(self, api_key: str) -> list[tuple[bytes, bytes]]:
        return [(b"api-key", api_key.encode())]

"""The routing config shape of issue 7, loaded from YAML as written, routes as it says.

Weights 70/30 between OpenAI and Azure OpenAI, key entries as strings or ``{key, weight, name}``,
fallback to another alias (served by Anthropic, translated), the one-deployment shorthand.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx

from llm_obs_middleware import Config, create_gateway

from ..conftest import drive

ISSUE_YAML = """
providers:
  openai:
    kind: openai
    base_url: http://openai.test/v1
    api_keys:
      - ${OPENAI_API_KEY}
      - {key: "${OPENAI_API_KEY_2}", weight: 3, name: openai-big}
  azure:
    kind: azure_openai
    base_url: http://azure.test/openai/v1
    api_keys: [{key: az-secret-value, name: azure-main}]
  anthropic:
    kind: anthropic
    base_url: http://anthropic.test
    api_keys: [ant-secret-value]
models:
  gpt-4o:
    deployments:
      - {provider: openai, model: gpt-4o, weight: 70}
      - {provider: azure, model: gpt-4o-prod, weight: 30}
    strategy: weighted        # or: latency, least_busy
    fallbacks: [claude-sonnet]
  claude-sonnet: {provider: anthropic, model: claude-sonnet-4-5}
  gpt-4o-mini: {provider: openai}
routing: {backoff_base_s: 0.001, backoff_cap_s: 0.002}
exporters:
  log_store: {url: "sqlite:///LOG_DB"}
"""
ENV = {"OPENAI_API_KEY": "sk-plain-secret", "OPENAI_API_KEY_2": "sk-big-secret"}
SECRETS = ("sk-plain-secret", "sk-big-secret", "az-secret-value", "ant-secret-value")
CHAT = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
OPENAI_OK = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
ANTHROPIC_OK = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "from claude"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 5, "output_tokens": 2},
}


class Upstream:
    """Answers per host; logs (host, credential, upstream model) of every call."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        credential = (
            request.headers.get("api-key")
            or request.headers.get("x-api-key")
            or request.headers.get("authorization", "").removeprefix("Bearer ")
        )
        self.calls.append((host, credential, json.loads(request.content)["model"]))
        if host in self.failing:
            return httpx.Response(503, json={"error": {"message": "down", "type": "server_error"}})
        return httpx.Response(200, json=ANTHROPIC_OK if host == "anthropic.test" else OPENAI_OK)


def load(tmp_path: Path) -> Config:
    path = tmp_path / "gateway.yaml"
    path.write_text(ISSUE_YAML.replace("LOG_DB", str(tmp_path / "log.db")))
    return Config.from_file(path, environ=ENV)


def test_the_issue_yaml_loads_as_written(tmp_path: Path) -> None:
    config = load(tmp_path)
    route = config.models["gpt-4o"]
    assert [(d.provider, d.model, d.weight) for d in route.targets()] == [
        ("openai", "gpt-4o", 70),
        ("azure", "gpt-4o-prod", 30),
    ]
    assert (route.strategy, route.fallbacks) == ("weighted", ["claude-sonnet"])
    plain, big = config.providers["openai"].api_keys
    assert (plain.get_secret_value(), plain.weight, plain.name) == ("sk-plain-secret", 1.0, None)
    assert (big.get_secret_value(), big.weight, big.name) == ("sk-big-secret", 3.0, "openai-big")
    assert [(d.provider, d.model) for d in config.models["gpt-4o-mini"].targets()] == [("openai", None)]
    assert not any(secret in repr(config) for secret in SECRETS)


async def test_the_issue_yaml_routes_by_weight_and_falls_back(tmp_path: Path) -> None:
    upstream = Upstream()
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
        gateway = create_gateway(load(tmp_path), client=client)
        gateway.stack.router.rng.seed(7)
        await gateway.startup()
        try:
            statuses = [(await drive(gateway, "/v1/chat/completions", CHAT)).status for _ in range(400)]
            upstream.failing = {"openai.test", "azure.test"}
            fallback = await drive(gateway, "/v1/chat/completions", CHAT)
            await gateway.pipeline.flush()
            store = gateway.exporters.log_store
            assert store is not None
            last = json.loads(store.query(limit=1)[0])
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://g") as admin:
                health = (await admin.get("/health/deployments")).text
        finally:
            await gateway.shutdown()
    assert statuses == [200] * 400
    weighted = upstream.calls[:400]
    hosts = Counter(host for host, _, _ in weighted)
    assert 0.64 <= hosts["openai.test"] / 400 <= 0.76, hosts
    # Azure gets its own upstream model and its key in ``api-key``.
    assert {(key, model) for host, key, model in weighted if host == "azure.test"} == {
        ("az-secret-value", "gpt-4o-prod")
    }
    # Key weights from ``{key, weight, name}``: 3 to 1 on OpenAI.
    keys = Counter(key for host, key, _ in weighted if host == "openai.test")
    assert 0.68 <= keys["sk-big-secret"] / hosts["openai.test"] <= 0.82, keys

    assert fallback.status == 200
    assert json.loads(fallback.body)["choices"][0]["message"]["content"] == "from claude"
    assert upstream.calls[-1] == ("anthropic.test", "ant-secret-value", "claude-sonnet-4-5")
    assert (last["fallback_index"], last["route"], last["rule"]) == (1, "anthropic", "gpt-4o")
    served = last["attempts"][-1]
    assert (served["deployment"], served["key_id"], served["status"]) == (
        "claude-sonnet/anthropic/claude-sonnet-4-5",
        "anthropic#0",
        200,
    )
    # Named keys show their name; unnamed ones ``<provider>#<index>``; secrets never leave.
    assert {a["key_id"] for a in last["attempts"][:-1]} <= {"openai#0", "openai-big", "azure-main"}
    assert '"openai-big"' in health and '"azure-main"' in health
    record_text = json.dumps(last)
    assert not any(secret in record_text or secret in health for secret in SECRETS)

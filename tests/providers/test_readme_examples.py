"""The README's per-provider examples run as written: its ``examples.yaml`` gateway and the fake provider
on loopback, each snippet executed from the README text (only the two ports are swapped for free ones).

Snippets are the ```` ```python example=<provider> ```` blocks; the config is the ```` ```yaml examples.yaml ````
block. Each snippet must print the fake's answer and leave records of its provider in ``/logs``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer, FakeProviderServer

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
SNIPPETS = dict(re.findall(r"```python example=(\w+)\n(.*?)```", README, flags=re.DOTALL))
[CONFIG] = re.findall(r"```yaml examples\.yaml\n(.*?)```", README, flags=re.DOTALL)
GATEWAY, FAKE = "127.0.0.1:8080", "127.0.0.1:9100"
# What each example must leave in /logs: the provider name and how many plain / streamed records.
EXPECTED = {
    "openai": ("openai", 1, 1),
    "azure": ("azure.ai.openai", 1, 0),
    "anthropic": ("anthropic", 1, 1),
    "gemini": ("gcp.gemini", 1, 1),
    "bedrock": ("aws.bedrock", 1, 1),
    "cohere": ("cohere", 1, 1),
    "groq": ("groq", 1, 0),
    "ollama": ("ollama", 1, 1),
}


def test_every_provider_kind_has_an_example() -> None:
    assert set(SNIPPETS) == set(EXPECTED)
    assert set(yaml.safe_load(CONFIG)["providers"]) == set(EXPECTED)
    for snippet in SNIPPETS.values():
        assert GATEWAY in snippet  # the address the README tells the reader to serve on


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with FakeProviderServer() as fake:
        data = yaml.safe_load(CONFIG.replace(FAKE, fake.base_url.removeprefix("http://")))
        data["exporters"]["log_store"]["url"] = f"sqlite:///{tmp_path_factory.mktemp('examples') / 'llm_obs.db'}"
        with BackgroundServer(create_gateway(Config.from_dict(data))) as server:
            yield server.url


def records(url: str, provider: str, count: int) -> list[dict[str, Any]]:
    """The provider's records once ``count`` reached /logs (the export runs off the request path)."""
    deadline = time.monotonic() + 10
    while True:
        data = httpx.get(f"{url}/logs", params={"provider": provider}).json()["data"]
        if len(data) >= count or time.monotonic() > deadline:
            return data  # type: ignore[no-any-return]
        time.sleep(0.02)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_as_written(
    name: str, gateway_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OLLAMA_HOST", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    snippet = SNIPPETS[name].replace(GATEWAY, gateway_url.removeprefix("http://"))
    exec(compile(snippet, f"README.md example={name}", "exec"), {})
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    provider, plain, streamed = EXPECTED[name]
    assert len(printed) == plain + streamed, printed
    assert all("fake" in line.lower() for line in printed), printed  # the fake provider's answers
    found = records(gateway_url, provider, plain + streamed)
    assert sorted(record["streamed"] for record in found) == [False] * plain + [True] * streamed
    for record in found:
        assert (record["status"], record["outcome"]) == (200, "completed"), record
        assert record["usage"]["output_tokens"] > 0

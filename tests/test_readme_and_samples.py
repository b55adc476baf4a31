"""README commands and snippets run as written; the sample apps work against the fake provider."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from starlette.testclient import TestClient

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import FakeProviderServer, create_fake_provider

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_readme_test_command_is_what_ci_runs() -> None:
    test_command = next(line for block in blocks("bash") for line in block.splitlines() if "pytest" in line)
    assert test_command in (REPO / ".ci" / "run").read_text().splitlines()


def test_readme_demo_command_installs_and_runs_the_demo() -> None:
    demo = next(line for block in blocks("bash") for line in block.splitlines() if "llm-obs demo" in line)
    assert demo.startswith("python3 -m venv .venv") and demo.endswith(".venv/bin/llm-obs demo")


@pytest.mark.parametrize("snippet", blocks("python"), ids=lambda s: s.splitlines()[0][:40])
def test_python_snippets_run(snippet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    app = namespace["app"]
    with TestClient(app) as client:  # type: ignore[arg-type]  # lifespan runs and shuts down cleanly
        assert client.get("/no-such-route").status_code == 404


def test_readme_config_yaml_is_valid() -> None:
    [config_yaml] = [block for block in blocks("yaml") if "providers:" in block]
    config = Config.from_dict(yaml.safe_load(config_yaml), environ={"OPENAI_API_KEY": "sk-test"})
    assert config.exporters.otlp is not None and config.exporters.otlp.protocol == "http"
    assert config.models["fast"].model == "gpt-4o-mini"


async def test_sample_gateway_yaml_serves_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = Config.from_file(REPO / "sample_apps" / "gateway.yaml", environ={"OPENAI_API_KEY": "sk-sample"})
    fake = create_fake_provider()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        gateway = create_gateway(config, client=upstream)
        await gateway.startup()
        client = openai.AsyncOpenAI(
            base_url="http://gw/v1", api_key="k", http_client=httpx.AsyncClient(transport=httpx.ASGITransport(gateway))
        )
        reply = await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        await client.close()
        await gateway.shutdown()
    assert reply.model == "gpt-4o-mini"
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-sample"
    assert (tmp_path / "llm_obs.db").exists()


@pytest.fixture
def fake_on_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeProviderServer]:
    monkeypatch.chdir(tmp_path)
    with FakeProviderServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-sample")
        yield server


@pytest.mark.parametrize(("module", "base_path"), [("fastapi_app", "/llm/v1"), ("mounted_app", "/ai/v1")])
def test_sample_apps(fake_on_loopback: FakeProviderServer, module: str, base_path: str) -> None:
    sys.path.insert(0, str(REPO))
    try:
        sample = importlib.reload(importlib.import_module(f"sample_apps.{module}"))
    finally:
        sys.path.remove(str(REPO))
    with TestClient(sample.app) as http:
        client = openai.OpenAI(base_url=f"http://testserver{base_path}", api_key="k", http_client=http)
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert fake_on_loopback.app.requests[-1].headers["authorization"] == "Bearer sk-sample"
    assert list(Path.cwd().glob("*.db")), "the sample app's request log was written"

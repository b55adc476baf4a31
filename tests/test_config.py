"""Config loading: every format, ${ENV} substitution, and errors that name the field."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, ConfigurationError, Secret, create_gateway
from llm_obs_middleware.config.checks import config_warnings

ISSUE_YAML = """
providers:
  openai:
    kind: openai
    base_url: http://127.0.0.1:9100/v1
    api_keys: ["${OPENAI_API_KEY}"]
models:
  gpt-4o-mini: {provider: openai}
  fast: {provider: openai, model: gpt-4o-mini}
exporters:
  prometheus: {enabled: true}
  otlp: {endpoint: http://127.0.0.1:4318, protocol: http}
  log_store: {url: sqlite:///llm_obs.db}
"""


def test_the_documented_yaml_shape_loads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(ISSUE_YAML)
    config = Config.from_file(path, environ={"OPENAI_API_KEY": "sk-abc"})
    [key] = config.providers["openai"].api_keys
    assert key.get_secret_value() == "sk-abc"
    assert "sk-abc" not in repr(config) and "sk-abc" not in str(key)
    assert config.models["fast"].model == "gpt-4o-mini"
    assert config.exporters.otlp is not None and config.exporters.otlp.endpoint == "http://127.0.0.1:4318"


def test_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('route_prefix = "/llm"\n[providers.p]\nkind = "openai_compatible"\nbase_url = "http://x/v1"\n')
    assert Config.from_file(toml).providers["p"].kind == "openai_compatible"
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"providers": {"p": {"kind": "vllm", "base_url": "http://x"}}, "default_provider": "p"}))
    assert Config.from_file(js).default_provider == "p"


def test_from_env_reads_llm_obs_config(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(ISSUE_YAML)
    config = Config.from_env({"LLM_OBS_CONFIG": str(path), "OPENAI_API_KEY": "k"})
    assert "openai" in config.providers
    with pytest.raises(ConfigurationError, match="LLM_OBS_CONFIG is not set"):
        Config.from_env({})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"providers": {"openai": {"kind": "openia", "base_url": "x"}}},
            r"^providers\.openai\.kind: invalid value 'openia' \(did you mean openai\?\); one of: openai, ",
        ),
        (
            {"providers": {"openai": {"kind": "openai", "base_url": "http://x", "api_key": "k"}}},
            r"^providers\.openai: unknown field api_key \(did you mean api_keys\?\)$",
        ),
        (
            {"providers": {"openai": {"kind": "openai", "base_url": "api.openai.com/v1"}}},
            r"^providers\.openai\.base_url: expected an http:// or https:// URL with a host, got 'api\.openai\.com/v1'",
        ),
        (
            {"providers": {"p": {"kind": "openai", "base_url": "http://x", "api_keys": [{"key": "k", "wieght": 2}]}}},
            r"^providers\.p\.api_keys\[0\]: unknown field wieght \(did you mean weight\?\)$",
        ),
        (
            {
                "providers": {"p": {"kind": "openai", "base_url": "http://x"}},
                "models": {"m": {"deployments": [{"provider": "p"}, {"provider": "p", "weight": 0}]}},
            },
            r"^models\.m\.deployments\[1\]\.weight: must be positive",
        ),
        (
            {"exporters": {"prometheus": {"enabld": True}}},
            r"^exporters\.prometheus: unknown field enabld \(did you mean enabled\?\)$",
        ),
        ({"provders": {}}, r"^config: unknown field provders \(did you mean providers\?\)$"),
        ({"providers": {"p": {"kind": "openai"}}}, r"base_url"),
        ({"models": {"m": {"provider": "nope"}}}, r"models\.m\.provider: 'nope' is not a configured provider"),
        ({"route_prefx": "/llm"}, r"route_prefx"),
        ({"route_prefix": "llm/"}, r"route_prefix"),
        ({"exporters": {"otlp": {"endpoint": "x", "protocol": "udp"}}}, r"exporters\.otlp\.protocol"),
        (
            {"providers": {"p": {"kind": "openai", "base_url": "x", "api_keys": ["${MISSING_KEY}"]}}},
            r"providers\.p\.api_keys\[0\]: environment variable MISSING_KEY is not set",
        ),
    ],
)
def test_errors_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Config.from_dict(data, environ={})


@pytest.mark.parametrize(("name", "text"), [("empty.yaml", ""), ("comments.yaml", "# todo\n"), ("empty.json", "{}")])
def test_an_empty_config_file_is_an_error(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=rf"config file .*{name} is empty"):
        Config.from_file(path)


def test_start_up_warns_about_providers_without_keys(caplog: pytest.LogCaptureFixture) -> None:
    config = Config.from_dict(
        {
            "providers": {
                "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1"},
                "azure": {
                    "kind": "azure_openai",
                    "base_url": "https://x.openai.azure.com",
                    "headers": {"api-key": "k"},
                },
                "local": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:8000/v1"},
            },
            "exporters": {"log_store": {"enabled": False}},
        }
    )
    assert config_warnings(config) == [
        "providers.openai: no api_keys; openai rejects requests without a key "
        "(the client's own credentials are not forwarded)"
    ]
    assert config_warnings(Config()) == [
        "providers: none configured; every LLM request will be answered 404 (unknown model)"
    ]
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.gateway.standalone"):
        create_gateway(config, registry=CollectorRegistry())
    assert [r.getMessage() for r in caplog.records] == [f"config: {config_warnings(config)[0]}"]


@pytest.mark.parametrize(("name", "text"), [("bad.yaml", "providers: [unclosed"), ("bad.ini", "x=1")])
def test_unreadable_files(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=name):
        Config.from_file(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        Config.from_file(tmp_path / "missing.yaml")


def test_secret_masks_itself() -> None:
    secret = Secret("sk-live")
    assert "sk-live" not in f"{secret!r} {secret}"
    assert secret == Secret("sk-live") and hash(secret) == hash(Secret("sk-live"))

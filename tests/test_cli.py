"""The ``llm-obs`` command line: argument errors, config errors, and what each command starts."""

from __future__ import annotations

import logging
import logging.config
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from llm_obs_middleware.gateway import cli, server_timeouts
from llm_obs_middleware.gateway.log_format import logging_config
from llm_obs_middleware.testing import FakeProvider

GOOD_CONFIG = """
providers:
  openai:
    kind: openai
    base_url: http://127.0.0.1:9100/v1
    api_keys: [sk-test]
models:
  gpt-4o-mini: {provider: openai}
exporters:
  prometheus: {enabled: false}
  log_store: {enabled: false}
"""


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    calls: list[tuple[Any, dict[str, Any]]] = []

    def run(app: Any, **kwargs: Any) -> None:
        # What uvicorn would see in the environment: the workers' metrics directory, if any.
        calls.append((app, {**kwargs, "env_metrics_dir": os.environ.get("PROMETHEUS_MULTIPROC_DIR")}))

    def serve(config: uvicorn.Config) -> int:
        # What `serve` hands the server (it builds uvicorn's Config itself, to carry the read timeouts).
        options = {
            "host": config.host,
            "port": config.port,
            "workers": config.workers,
            "log_level": config.log_level,
            "root_path": config.root_path,
            "access_log": config.access_log,
            "log_config": config.log_config,
            "timeout_keep_alive": config.timeout_keep_alive,
            "timeout_graceful_shutdown": config.timeout_graceful_shutdown,
        }
        run(config.app, **options)
        return 0

    monkeypatch.setattr(uvicorn, "run", run)
    # `serve` imports the server helpers when it runs (uvicorn is the gateway extra): patch them at their source.
    monkeypatch.setattr(server_timeouts, "serve_uvicorn", serve)
    # `serve` configures the console logging of its process: not this test process's.
    monkeypatch.setattr(logging.config, "dictConfig", lambda config: None)
    return calls


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "choose a command"),
        (["nope"], "invalid choice"),
        (["serve"], "--config"),
        (["serve", "--config", "x.yaml", "--workers", "0"], "expected an integer >= 1"),
        (["serve", "--config", "x.yaml", "--port", "http"], "invalid int value"),
        (["serve", "--config", "x.yaml", "--log-level", "loud"], "invalid choice"),
        (["fake-provider", "--latency-ms", "-1"], "expected a number >= 0"),
        (["fake-provider", "--chunks", "many"], "invalid int value"),
        (["demo", "--requests", "1"], "expected an integer from 2 to 1000"),
        (["demo", "--requests", "1001"], "expected an integer from 2 to 1000"),
    ],
)
def test_argument_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "serve" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("llm-obs ")


def test_serve_bad_config_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uvicorn_calls: list[Any]
) -> None:
    bad = write(tmp_path, "providers:\n  openai:\n    kind: nonsense\n    base_url: http://x\n")
    assert cli.main(["serve", "--config", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-obs: error: ")
    assert "providers.openai.kind" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert uvicorn_calls == []


@pytest.mark.parametrize(
    ("text", "name", "field"),
    [
        ("exporterz: {}\n", "gateway.yaml", "exporterz"),
        ('{"models": {"m": {"provider": "missing"}}}', "gateway.json", "models.m.provider"),
        ("route_prefix = 'llm'\n", "gateway.toml", "route_prefix"),
    ],
)
def test_serve_config_errors_in_every_format(
    tmp_path: Path, text: str, name: str, field: str, capsys: pytest.CaptureFixture[str], uvicorn_calls: list[Any]
) -> None:
    assert cli.main(["serve", "--config", write(tmp_path, text, name)]) == 2
    assert field in capsys.readouterr().err


def test_serve_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], uvicorn_calls: list[Any]) -> None:
    assert cli.main(["serve", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


def test_serve_runs_the_gateway(tmp_path: Path, uvicorn_calls: list[tuple[Any, dict[str, Any]]]) -> None:
    from llm_obs_middleware.gateway.standalone import Gateway

    config = write(tmp_path, GOOD_CONFIG)
    assert cli.main(["serve", "--config", config, "--port", "8181", "--log-level", "warning"]) == 0
    [(app, options)] = uvicorn_calls
    assert isinstance(app, Gateway)
    assert options == {
        "host": "127.0.0.1",
        "port": 8181,
        "workers": 1,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 30,
        "log_level": "warning",
        "root_path": "",
        "access_log": False,
        "log_config": logging_config(logging.WARNING, "text"),
        "env_metrics_dir": None,  # one process: its own registry
    }


def test_serve_with_workers_imports_the_app_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list[tuple[Any, dict[str, Any]]]
) -> None:
    monkeypatch.setenv("LLM_OBS_CONFIG", "restored-after-the-test")
    config = write(tmp_path, GOOD_CONFIG)
    assert cli.main(["serve", "--config", config, "--workers", "3", "--root-path", "/llm"]) == 0
    [(app, options)] = uvicorn_calls
    assert app == "llm_obs_middleware.gateway:app"
    assert options["workers"] == 3 and options["root_path"] == "/llm"
    assert os.environ["LLM_OBS_CONFIG"] == str(Path(config).resolve())
    # The workers got a private metrics directory; it is gone once the server has stopped.
    metrics_dir = options["env_metrics_dir"]
    assert metrics_dir and Path(metrics_dir).name.startswith("llm-obs-metrics-")
    assert not Path(metrics_dir).exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_serve_with_workers_keeps_the_users_metrics_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list[tuple[Any, dict[str, Any]]]
) -> None:
    monkeypatch.setenv("LLM_OBS_CONFIG", "restored-after-the-test")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert cli.main(["serve", "--config", write(tmp_path, GOOD_CONFIG), "--workers", "2"]) == 0
    [(_, options)] = uvicorn_calls
    assert options["env_metrics_dir"] == str(tmp_path) and tmp_path.exists()


def test_serve_log_format_json(tmp_path: Path, uvicorn_calls: list[tuple[Any, dict[str, Any]]]) -> None:
    assert cli.main(["serve", "--config", write(tmp_path, GOOD_CONFIG), "--log-format", "json"]) == 0
    [(_, options)] = uvicorn_calls
    assert options["log_config"] == logging_config(logging.INFO, "json")


def test_fake_provider_command(uvicorn_calls: list[tuple[Any, dict[str, Any]]]) -> None:
    argv = ["fake-provider", "--port", "9200", "--latency-ms", "5", "--ttft-ms", "20", "--chunks", "7"]
    assert cli.main([*argv, "--chunk-interval-ms", "2.5"]) == 0
    [(app, options)] = uvicorn_calls
    assert isinstance(app, FakeProvider)
    assert (app.config.latency_s, app.config.ttft_s, app.config.chunk_interval_s) == (0.005, 0.02, 0.0025)
    assert app.config.chunks == 7
    assert options["host"] == "127.0.0.1" and options["port"] == 9200
    assert options["access_log"] is False


def test_demo_command_passes_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_obs_middleware.gateway import demo

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(demo, "run_demo", lambda **kwargs: calls.append(kwargs))
    assert cli.main(["demo", "--requests", "5", "--port", "8099", "--keep-running"]) == 0
    assert calls == [{"port": 8099, "requests": 5, "keep_running": True}]


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llm_obs_middleware", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.startswith("llm-obs ")
    result = subprocess.run([sys.executable, "-m", "llm_obs_middleware"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2

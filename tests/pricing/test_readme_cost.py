"""The README's Cost section: its price file loads and its ``llm-obs price`` output is what the command prints."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from llm_obs_middleware import Config, PricingConfig
from llm_obs_middleware.gateway import cli
from llm_obs_middleware.pricing import build_price_source
from llm_obs_middleware.pricing.overrides import parse_table
from llm_obs_middleware.records.schema import Usage

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
COST = README[README.index("## Cost\n") : README.index("## Metrics (Prometheus)")]


def block(language: str, marker: str) -> str:
    found: list[str] = [
        text for text in re.findall(rf"```{language}\n(.*?)```", COST, flags=re.DOTALL) if marker in text
    ]
    [text] = found
    return text


def test_documented_price_file_and_config_load(tmp_path: Path) -> None:
    table = parse_table(yaml.safe_load(block("yaml", "# prices.yaml")), "README")
    (tmp_path / "prices.yaml").write_text(block("yaml", "# prices.yaml"))
    config = Config.from_dict(yaml.safe_load(block("yaml", "overrides: prices.yaml")))
    assert config.pricing.overrides == "prices.yaml"
    source = build_price_source(PricingConfig(overrides=str(tmp_path / "prices.yaml")))
    for model in ("claude-sonnet-4-20250514", "claude-sonnet-4@20250514", "sonnet"):
        cost = source.price("anthropic", model, Usage(input_tokens=1_000_000))
        assert cost is not None and cost.source == "overrides" and cost.total_usd == pytest.approx(2.70), model
    cost = source.price("bedrock", "eu.anthropic.claude-3-5-sonnet-20240620-v1:0", Usage(output_tokens=1_000_000))
    assert cost is not None and cost.total_usd == pytest.approx(15.00)
    assert set(table) == {"openai", "anthropic", "bedrock", "vllm", "*"}


def test_documented_price_command_output(capsys: pytest.CaptureFixture[str]) -> None:
    text = block("text", "$ llm-obs price")
    command, _, expected = text.partition("\n")
    while command.endswith("\\"):
        more, _, expected = expected.partition("\n")
        command = command[:-1] + more
    argv = shlex.split(command.removeprefix("$ "))[1:]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    # The version in the "price" line moves with genai-prices; everything else must match.
    drop_version = re.compile(r"genai-prices [0-9.]+ data")
    assert drop_version.sub("genai-prices data", printed) == drop_version.sub("genai-prices data", expected)

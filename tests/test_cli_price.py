"""``llm-obs price``: the per-component breakdown, its source, overrides from a config, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_obs_middleware.gateway import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(["price", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def rows(out: str) -> dict[str, list[str]]:
    """Table rows by component name (first column) -> the other columns."""
    table = out.split("\n\n", 1)[1].splitlines()[1:]
    return {line[:22].strip(): line[22:].split() for line in table}


def test_anthropic_breakdown_with_cache_and_1h_writes(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys,
        "claude-sonnet-4-20250514",
        "--provider=anthropic",
        "--input=15000",
        "--cache-read=10000",
        "--cache-write=3000",
        "--cache-write-1h=1000",
        "--output=800",
    )
    assert status == 0, err
    assert out.startswith("model     claude-sonnet-4-20250514 (provider: anthropic)\n")
    assert "price     genai-prices " in out and "model 'claude-sonnet-4-0'" in out
    table = rows(out)
    # $3 input, $0.30 cache read, $3.75 5-minute and $6 1-hour cache writes, $15 output (README, Cost).
    assert table["input (uncached)"] == ["2,000", "3.0000", "0.00600000"]
    assert table["cache read"] == ["10,000", "0.3000", "0.00300000"]
    assert table["cache write"] == ["3,000", "4.5000", "0.01350000"]  # (2,000 x 3.75 + 1,000 x 6) / 3,000
    assert table["of which 1h TTL"] == ["1,000"]
    assert table["output"] == ["800", "15.0000", "0.01200000"]
    assert table["total"] == ["15,800", "0.03450000"]


def test_reasoning_tokens_are_output(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "o4-mini", "--input", "1000", "--output", "3000", "--reasoning", "2000")
    assert status == 0
    table = rows(out)
    assert table["output"] == ["3,000", "4.4000", "0.01320000"]
    assert table["of which reasoning"] == ["2,000"]
    assert table["total"] == ["4,000", "0.01430000"]  # + 1,000 x 1.10 / 1e6


def test_time_of_the_request(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("deepseek-chat", "--provider=deepseek", "--input=1000000", "--output=0")
    _, peak, _ = run(capsys, *args, "--at=2026-11-20T12:00:00+00:00")
    _, off_peak, _ = run(capsys, *args, "--at=2026-11-20T20:00:00+00:00")
    assert rows(peak)["total"] == ["1,000,000", "0.27000000"]
    assert rows(off_peak)["total"] == ["1,000,000", "0.13500000"]


def test_override_file_from_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("openai:\n  ft:gpt-4o-mini:acme::x1: {input: 0.30, output: 1.20, cache_read: 0.15}\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(f"pricing:\n  overrides: {prices}\n")
    status, out, err = run(
        capsys, "ft:gpt-4o-mini:acme::x1", "--config", str(config), "--input=2000", "--cache-read=1000", "--output=100"
    )
    assert status == 0, err
    assert f"price     override file {prices}: provider 'openai', model 'ft:gpt-4o-mini:acme::x1'" in out
    assert rows(out)["total"] == ["2,100", "0.00057000"]  # 1,000 x 0.30 + 1,000 x 0.15 + 100 x 1.20, / 1e6


def test_unknown_model_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "no-such-model-42", "--input=1", "--output=1")
    assert status == 2 and not out
    assert err == (
        "llm-obs: error: no price for model 'no-such-model-42' (provider any) in genai-prices; "
        "add it to pricing.overrides (see README, Cost)\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gpt-4o", "--input=10", "--cache-read=8", "--cache-write=8", "--output=1"], "exceed --input"),
        (["gpt-4o", "--input=10", "--cache-write=2", "--cache-write-1h=3", "--output=1"], "exceeds --cache-write"),
        (["gpt-4o", "--input=10", "--output=1", "--reasoning=2"], "exceeds --output"),
        (["gpt-4o", "--input=10", "--output=1", "--at=yesterday"], "not an ISO-8601"),
        (["gpt-4o", "--input=-1", "--output=1"], "expected an integer >= 0"),
        (["gpt-4o", "--output=1"], "the following arguments are required: --input"),
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert message in err


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"pricing:\n  overrides: {tmp_path / 'missing.yaml'}\n")
    status, _, err = run(capsys, "gpt-4o", "--config", str(config), "--input=1", "--output=1")
    assert status == 2
    assert "cannot read price file" in err

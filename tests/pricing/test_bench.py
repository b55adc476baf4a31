"""benchmarks/pricing_bench.py still runs, and its request-path check holds (no timing asserted here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "pricing_bench.py"


def test_pricing_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("pricing_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--per-batch", "20", "--batches", "3", "--requests", "12", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    path = results["request_path"]
    assert path == {
        "requests": 12,
        "records": 12,
        "price_calls": 12,
        "price_calls_outside_the_export_worker": 0,
        "ok": True,
    }
    assert set(results["cost_step"]["cases"]) == {name for name, *_ in bench.CASES}
    assert "request path: 12 requests, 12 records, 12 price() calls, 0 outside the export worker -> OK" in (
        capsys.readouterr().out
    )

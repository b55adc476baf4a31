"""JSONLSink: one record per line, exact bytes, size-based rotation, reopen, and through the gateway."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.config.settings import JSONLConfig
from llm_obs_middleware.errors import ConfigurationError
from llm_obs_middleware.exporters.jsonl import JSONLSink
from llm_obs_middleware.records.schema import LLMRecord
from llm_obs_middleware.testing import create_fake_provider

from ..conftest import config_dict
from .conftest import RecordFactory


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def sizes(folder: Path) -> list[int]:
    return [p.stat().st_size for p in folder.iterdir()]


def request_ids(path: Path) -> list[str]:
    return [msgspec.json.decode(line, type=LLMRecord).request_id for line in lines(path)]


async def test_lines_are_the_records_exactly(tmp_path: Path, record_factory: RecordFactory) -> None:
    path = tmp_path / "deep" / "llm_obs.jsonl"
    sink = JSONLSink(JSONLConfig(path=str(path)))
    await sink.start()
    records = [record_factory(n=n, session_id=f"s{n}") for n in range(3)]
    buffer = sink._buffer
    await sink.export(records[:2])
    await sink.export(records[2:])
    await sink.export([])
    await sink.close()
    assert lines(path) == [msgspec.json.encode(record) for record in records]
    assert path.read_bytes().endswith(b"}\n")
    assert sink._buffer is buffer  # one buffer, reused by every batch


async def test_reopening_appends(tmp_path: Path, record_factory: RecordFactory) -> None:
    path = tmp_path / "x.jsonl"
    for n in range(2):
        sink = JSONLSink(JSONLConfig(path=str(path)))
        await sink.export([record_factory(n=n)])
        await sink.close()
    assert request_ids(path) == ["req-0", "req-1"]


async def test_rotation_by_size_keeps_whole_lines_and_a_bounded_number_of_files(
    tmp_path: Path, record_factory: RecordFactory
) -> None:
    path = tmp_path / "r.jsonl"
    line = len(msgspec.json.encode(record_factory(n=10))) + 1
    sink = JSONLSink(JSONLConfig(path=str(path), max_bytes=3 * line, backup_count=2))
    for n in range(10, 20):  # ten records, three per file at most
        await sink.export([record_factory(n=n)])
    await sink.close()
    assert names(tmp_path) == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    assert request_ids(path) == ["req-19"]
    assert request_ids(tmp_path / "r.jsonl.1") == ["req-16", "req-17", "req-18"]
    assert request_ids(tmp_path / "r.jsonl.2") == ["req-13", "req-14", "req-15"]  # req-10..12 rotated away
    assert max(sizes(tmp_path)) <= 3 * line


async def test_a_batch_larger_than_the_limit_is_written_whole(tmp_path: Path, record_factory: RecordFactory) -> None:
    path = tmp_path / "big.jsonl"
    sink = JSONLSink(JSONLConfig(path=str(path), max_bytes=10, backup_count=0))
    await sink.export([record_factory(n=n) for n in range(3)])
    await sink.export([record_factory(n=3)])  # no backups: the file starts again
    await sink.close()
    assert request_ids(path) == ["req-3"]
    assert names(tmp_path) == ["big.jsonl"]


def test_config_validation() -> None:
    with pytest.raises(ConfigurationError, match=r"exporters\.jsonl"):
        JSONLConfig(path="x", max_bytes=0)
    config = Config.from_dict({"exporters": {"jsonl": {"path": "./llm_obs.jsonl"}}})
    assert config.exporters.jsonl == JSONLConfig(path="./llm_obs.jsonl")


async def test_gateway_writes_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "gw.jsonl"
    data = config_dict()
    data["exporters"]["jsonl"] = {"path": str(path)}
    fake = create_fake_provider()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        gateway = create_gateway(Config.from_dict(data), client=upstream)
        await gateway.startup()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
            for _ in range(2):
                reply = await client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                )
                assert reply.status_code == 200
        await gateway.shutdown()
    records = [msgspec.json.decode(line, type=LLMRecord) for line in lines(path)]
    assert [r.requested_model for r in records] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert gateway.pipeline.stats.exported["jsonl"] == 2

"""The standalone gateway keeps its start-up objects out of full garbage collections while it runs."""

from __future__ import annotations

import gc

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway


def _gateway(**extra: object) -> Gateway:
    config = Config.from_dict(
        {
            "providers": {"fake": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_keys": ["sk-x"]}},
            "exporters": {"prometheus": {"enabled": False}, "log_store": {"enabled": False}},
            **extra,
        }
    )
    gateway = create_gateway(config)
    assert isinstance(gateway, Gateway)
    return gateway


async def test_startup_freezes_and_shutdown_thaws() -> None:
    assert gc.get_freeze_count() == 0
    first, second = _gateway(), _gateway()
    await first.startup()
    assert gc.get_freeze_count() > 1000  # modules, config, routes: all made before the first request
    await second.startup()
    await first.shutdown()
    assert gc.get_freeze_count() > 0  # the other gateway still runs
    await second.shutdown()
    assert gc.get_freeze_count() == 0


async def test_gc_freeze_false_leaves_the_collector_alone() -> None:
    gateway = _gateway(gc_freeze=False)
    await gateway.startup()
    try:
        assert gc.get_freeze_count() == 0
    finally:
        await gateway.shutdown()

"""Routing decisions cost the same with 1 or 50 deployments and keys (issue 7).

Drives the RouterMiddleware in-process (no network: an ``httpx.MockTransport`` answers with a
prebuilt completion) and reports the median CPU time per request for a model alias with one
deployment and one key, and with 50 deployments of 50 keys each, in interleaved repetitions.
A second table times the routing decision alone (deployment order and key pick) per strategy.

    .venv/bin/python benchmarks/routing_bench.py [--requests 3000] [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import msgspec

from llm_obs_middleware import Config, RouterMiddleware
from llm_obs_middleware.routing.attempts import pick_target
from llm_obs_middleware.routing.balancing import order_deployments

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
ANSWER = msgspec.json.encode(
    {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)


def config(deployments: int, keys: int, strategy: str = "weighted") -> Config:
    providers = {
        f"p{i}": {"kind": "openai", "base_url": f"http://p{i}.test/v1", "api_keys": [f"k{i}-{j}" for j in range(keys)]}
        for i in range(deployments)
    }
    return Config.from_dict(
        {
            "providers": providers,
            "models": {
                "m": {
                    "deployments": [{"provider": f"p{i}", "weight": 1 + i % 3} for i in range(deployments)],
                    "strategy": strategy,
                }
            },
        }
    )


async def not_routed(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("every request is routed")


async def per_request_us(router: RouterMiddleware, requests: int) -> float:
    scope_base = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    started = time.process_time()
    for _ in range(requests):
        await router(dict(scope_base), receive, send)
    return (time.process_time() - started) / requests * 1e6


def decision_us(router: RouterMiddleware, decisions: int) -> float:
    """CPU time of one routing decision: the deployment order, then the deployment and key picked."""
    route = router.routes.aliases["m"]
    rng = router.rng
    started = time.process_time()
    for _ in range(decisions):
        order = order_deployments(route.deployments, route.strategy, rng, cum_weights=route.cum_weights)
        pick_target(order, [], rng)
    return (time.process_time() - started) / decisions * 1e6


async def main(requests: int, reps: int) -> int:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=ANSWER)))
    routers = {
        "1 deployment x 1 key": RouterMiddleware(not_routed, config=config(1, 1), client=client),
        "50 deployments x 50 keys": RouterMiddleware(not_routed, config=config(50, 50), client=client),
    }
    for router in routers.values():
        await per_request_us(router, 200)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in routers}
    for _ in range(reps):
        for name, router in routers.items():  # interleaved, so machine noise hits both alike
            samples[name].append(await per_request_us(router, requests))
    small, large = (statistics.median(values) for values in samples.values())
    sys.stdout.write("| routing table | CPU µs per request (median) |\n|---|---|\n")
    for name, values in samples.items():
        sys.stdout.write(f"| {name} | {statistics.median(values):.1f} |\n")
    sys.stdout.write(f"\nratio 50x50 / 1x1: {large / small:.2f}\n\n")
    sys.stdout.write("| strategy | decision µs, 1x1 | decision µs, 50x50 |\n|---|---|---|\n")
    for strategy in ("weighted", "latency", "least_busy"):
        pair = [RouterMiddleware(not_routed, config=config(n, n, strategy), client=client) for n in (1, 50)]
        medians = [statistics.median(decision_us(router, requests * 5) for _ in range(reps)) for router in pair]
        sys.stdout.write(f"| {strategy} | {medians[0]:.2f} | {medians[1]:.2f} |\n")
    await client.aclose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.requests, args.reps)))

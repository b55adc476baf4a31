"""Serve one benchmark target under uvicorn, with identical server settings for every target.

    python benchmarks/serve.py bare-httpx    --port 9301 --upstream http://127.0.0.1:9100
    python benchmarks/serve.py bare-aiohttp  --port 9302 --upstream http://127.0.0.1:9100
    python benchmarks/serve.py gateway       --port 9303 --config gateway.json
    python benchmarks/serve.py otlp-receiver --port 9304
    python benchmarks/serve.py fake          --port 9100 --chunks 20

Every target runs in one process, one worker, no access log, lifespan on; ``--loop``/``--http``
choose uvicorn's event loop and HTTP parser (``auto`` takes uvloop and httptools when installed).
uvicorn binds the socket itself, so asyncio sets TCP_NODELAY on every connection. ``--server granian``
serves the same app under granian instead (one worker, uvloop), to compare the two servers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = ("bare-httpx", "bare-aiohttp", "gateway", "otlp-receiver", "fake")


def build_app(args: argparse.Namespace) -> Any:
    """The ASGI app of one target."""
    if args.target in ("bare-httpx", "bare-aiohttp"):
        from bare_proxy import proxy_for

        return proxy_for(args.target, args.upstream)
    if args.target == "gateway":
        # The public API only: `-base` targets run older package trees with other internal layouts.
        from llm_obs_middleware import Config, create_gateway

        return create_gateway(Config.from_file(args.config))
    if args.target == "fake":
        from llm_obs_middleware.testing import FakeProviderConfig, create_fake_provider

        return create_fake_provider(FakeProviderConfig(chunks=args.chunks))
    from otlp_receiver import OTLPReceiver

    return OTLPReceiver()


_GRANIAN_ARGS = "LLM_OBS_BENCH_SERVE_ARGS"


def granian_app() -> Any:
    """The app for granian (``--factory``): granian imports its target by name, so the arguments travel
    in the environment."""
    return build_app(argparse.Namespace(**json.loads(os.environ[_GRANIAN_ARGS])))


def _run_granian(args: argparse.Namespace) -> None:
    os.environ[_GRANIAN_ARGS] = json.dumps(vars(args))
    granian = Path(sys.executable).with_name("granian")
    command = [str(granian), "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(args.port)]
    command += ["--workers", "1", "--loop", "uvloop" if args.loop in ("auto", "uvloop") else "asyncio"]
    command += ["--log-level", "warning", "--working-dir", str(Path(__file__).resolve().parent), "serve:granian_app"]
    os.execv(command[0], command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="http://127.0.0.1:9100", help="bare proxies: upstream root URL")
    parser.add_argument("--config", help="gateway: config file")
    parser.add_argument("--chunks", type=int, default=20, help="fake: content chunks per answer")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    parser.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"))
    parser.add_argument("--server", default="uvicorn", choices=("uvicorn", "granian"))
    args = parser.parse_args()
    if args.server == "granian":
        _run_granian(args)

    import uvicorn

    uvicorn.run(
        build_app(args),
        host="127.0.0.1",
        port=args.port,
        loop=args.loop,
        http=args.http,
        ws="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()

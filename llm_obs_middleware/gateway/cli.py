"""The ``llm-obs`` command: ``serve`` the gateway, run the ``fake-provider``, run the ``demo``, or ``price`` usage.

``main()`` returns the exit status instead of exiting, so it can be called from tests and from
``python -m llm_obs_middleware``: 0 on success, 2 for bad arguments, a bad configuration or a missing
extra (``serve``, ``fake-provider`` and ``demo`` run under uvicorn, from the ``gateway`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from llm_obs_middleware import __version__
from llm_obs_middleware.config.extras import require_uvicorn
from llm_obs_middleware.errors import ConfigurationError, MissingDependencyError
from llm_obs_middleware.gateway.demo import MAX_REQUESTS
from llm_obs_middleware.gateway.read_timeouts import ReadTimeouts

if TYPE_CHECKING:
    # What add_subparsers() returns: the subcommands' parsers are added to it.
    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["main"]

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``llm-obs`` command line with ``argv`` (default ``sys.argv[1:]``) and return its exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad arguments; we return the status instead
        return exc.code if isinstance(exc.code, int) else 2
    command: Callable[[argparse.Namespace], int] | None = getattr(args, "command", None)
    if command is None:
        parser.print_usage(sys.stderr)
        sys.stderr.write("llm-obs: error: choose a command: serve, fake-provider, demo or price\n")
        return 2
    try:
        return command(args)
    except MissingDependencyError as exc:
        sys.stderr.write(f"llm-obs: error: {exc}\n")
        return 2


def _serve(args: argparse.Namespace) -> int:
    import logging.config

    require_uvicorn("llm-obs serve")
    import uvicorn
    from uvicorn.config import LOG_LEVELS

    from llm_obs_middleware.config.settings import Config
    from llm_obs_middleware.gateway.admin import check_exposure
    from llm_obs_middleware.gateway.log_format import logging_config
    from llm_obs_middleware.gateway.server_timeouts import protocol_class, serve_uvicorn, with_read_timeouts
    from llm_obs_middleware.gateway.standalone import create_gateway

    log_config = logging_config(LOG_LEVELS[args.log_level], args.log_format)
    _raise_open_files_limit()
    try:
        config = Config.from_file(args.config)
        check_exposure(config, args.host)
        # Before the gateway is built, so its start-up warnings are formatted too (uvicorn applies the
        # same config again, in each worker).
        logging.config.dictConfig(log_config)
        # Built here even with several workers (which build their own), so a bad config fails now, once.
        app = create_gateway(config)
    except ConfigurationError as exc:
        sys.stderr.write(f"llm-obs: error: {exc}\n")
        return 2
    if args.workers > 1:
        # Worker processes import the app by name and read the config file from the environment.
        os.environ["LLM_OBS_CONFIG"] = str(Path(args.config).resolve())
    served = uvicorn.Config(
        "llm_obs_middleware.gateway:app" if args.workers > 1 else app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=log_config,
        root_path=args.root_path,
        # Every LLM request is in the gateway's own request log; uvicorn's line per request costs CPU for nothing.
        access_log=args.access_log,
        http=protocol_class(),
        timeout_keep_alive=args.keep_alive_timeout,
        timeout_graceful_shutdown=args.graceful_shutdown_timeout,
    )
    with _multiprocess_metrics() if args.workers > 1 else contextlib.nullcontext():
        return serve_uvicorn(with_read_timeouts(served, ReadTimeouts(args.header_timeout, args.body_timeout)))


def _raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: each stream holds two sockets (the client's and
    the upstream's), and the default soft limit (often 1,024) is far below ``routing.max_connections``."""
    try:
        import resource
    except ImportError:  # not on this platform (Windows)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def _multiprocess_metrics() -> Iterator[None]:
    """Give the workers one private ``PROMETHEUS_MULTIPROC_DIR`` (unless the user set one), removed at exit.

    Each worker then writes its counters there and any worker's ``/metrics`` serves the sum; without
    it a scrape sees the counts of whichever worker answered.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    directory = tempfile.mkdtemp(prefix="llm-obs-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # inherited by the workers uvicorn spawns
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(directory, ignore_errors=True)


def _fake_provider(args: argparse.Namespace) -> int:
    require_uvicorn("llm-obs fake-provider")
    from llm_obs_middleware.testing import FakeProviderConfig, run_fake_provider

    config = FakeProviderConfig(
        latency_s=args.latency_ms / 1000,
        ttft_s=args.ttft_ms / 1000,
        chunk_interval_s=args.chunk_interval_ms / 1000,
        chunks=args.chunks,
    )
    run_fake_provider(args.host, args.port, config, log_level=args.log_level)
    return 0


def _demo(args: argparse.Namespace) -> int:
    require_uvicorn("llm-obs demo")
    from llm_obs_middleware.gateway.demo import run_demo

    run_demo(port=args.port, requests=args.requests, keep_running=args.keep_running)
    return 0


def _price(args: argparse.Namespace) -> int:
    from datetime import datetime

    from llm_obs_middleware.config.settings import Config, PricingConfig
    from llm_obs_middleware.pricing.breakdown import format_breakdown
    from llm_obs_middleware.pricing.chain import build_price_source
    from llm_obs_middleware.records.schema import Usage

    def fail(message: str) -> int:
        sys.stderr.write(f"llm-obs: error: {message}\n")
        return 2

    try:
        pricing = Config.from_file(args.config).pricing if args.config else PricingConfig()
        source = build_price_source(pricing)
    except ConfigurationError as exc:
        return fail(str(exc))
    if args.cache_read + args.cache_write > args.input:
        return fail("--cache-read + --cache-write exceed --input (--input counts all input tokens, cached included)")
    if args.cache_write_1h > args.cache_write:
        return fail("--cache-write-1h exceeds --cache-write (it counts the 1-hour part of the cache writes)")
    if args.reasoning > args.output:
        return fail("--reasoning exceeds --output (--output counts all output tokens, reasoning included)")
    timestamp = None
    if args.at:
        try:
            timestamp = datetime.fromisoformat(args.at).timestamp()
        except ValueError:
            return fail(f"--at: not an ISO-8601 date-time: {args.at!r}")
    provider = args.provider or ""
    described = source.describe(provider, args.model)
    usage = Usage(
        input_tokens=args.input,
        output_tokens=args.output,
        total_tokens=args.input + args.output,
        cache_read_tokens=args.cache_read or None,
        cache_write_tokens=args.cache_write or None,
        cache_write_1h_tokens=args.cache_write_1h or None,
        reasoning_tokens=args.reasoning or None,
    )
    cost = source.price(provider, args.model, usage, timestamp=timestamp) if described else None
    if described is None or cost is None:
        searched = [
            name
            for name, used in (("pricing.overrides", pricing.overrides), ("genai-prices", pricing.genai_prices))
            if used
        ]
        where = " or ".join(searched)
        return fail(
            f"no price for model {args.model!r} (provider {provider or 'any'}) in {where or 'no price source'}; "
            "add it to pricing.overrides (see README, Cost)"
        )
    sys.stdout.write(format_breakdown(args.model, provider, described, usage, cost))
    return 0


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


_positive_seconds.__name__ = "float"


def _non_negative(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" message
    return parse


def _at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"expected an integer {bounds}, got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-obs", description="LLM observability gateway.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_serve(commands)
    _add_fake_provider(commands)
    _add_demo(commands)
    _add_price(commands)
    return parser


def _add_serve(commands: _Commands) -> None:
    serve = commands.add_parser("serve", help="run the gateway", description="Run the gateway under uvicorn.")
    serve.add_argument("--config", required=True, metavar="PATH", help="YAML, TOML or JSON config file")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    serve.add_argument("--port", type=_at_least(0), default=8080, help="port to bind (default: %(default)s)")
    serve.add_argument("--workers", type=_at_least(1), default=1, help="worker processes (default: %(default)s)")
    serve.add_argument("--log-level", choices=_LOG_LEVELS, default="info", help="(default: %(default)s)")
    serve.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="console log lines (default: %(default)s)"
    )
    serve.add_argument("--root-path", default="", help="path prefix the gateway is served under behind a proxy")
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="also log a line per HTTP request (uvicorn's access log; default: off)",
    )
    _add_serve_timeouts(serve)
    serve.set_defaults(command=_serve)


def _add_serve_timeouts(serve: argparse.ArgumentParser) -> None:
    seconds = _positive_seconds
    serve.add_argument(
        "--header-timeout",
        type=seconds,
        default=ReadTimeouts().header_s,
        metavar="S",
        help="close a connection whose request headers take longer (default: %(default)s)",
    )
    serve.add_argument(
        "--body-timeout",
        type=seconds,
        default=ReadTimeouts().body_s,
        metavar="S",
        help="close a connection whose request body takes longer after its headers (default: %(default)s)",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=seconds,
        default=5.0,
        metavar="S",
        help="close an idle keep-alive connection after this long (default: %(default)s)",
    )
    serve.add_argument(
        "--graceful-shutdown-timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="on SIGTERM, cut requests still running after this long (default: %(default)s)",
    )


def _add_fake_provider(commands: _Commands) -> None:
    fake = commands.add_parser(
        "fake-provider",
        help="run the OpenAI-compatible fake provider",
        description="Run the fake provider (used by tests, the demo and the benchmarks) under uvicorn.",
    )
    fake.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    fake.add_argument("--port", type=_at_least(0), default=9100, help="port to bind (default: %(default)s)")
    fake.add_argument("--latency-ms", type=_non_negative(float), default=0.0, help="delay before the headers")
    fake.add_argument("--ttft-ms", type=_non_negative(float), default=0.0, help="delay before a stream's first token")
    fake.add_argument("--chunks", type=_at_least(0), default=5, help="content chunks per stream (default: %(default)s)")
    fake.add_argument("--chunk-interval-ms", type=_non_negative(float), default=0.0, help="delay between chunks")
    fake.add_argument("--log-level", choices=_LOG_LEVELS, default="info", help="(default: %(default)s)")
    fake.set_defaults(command=_fake_provider)


def _add_demo(commands: _Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="send sample traffic through a local gateway and summarise it",
        description="Start the fake provider and a gateway on loopback, send sample traffic, print a summary.",
    )
    demo.add_argument("--port", type=_at_least(0), default=0, help="gateway port (default: a free one)")
    demo.add_argument(
        "--requests",
        type=_at_least(2, MAX_REQUESTS),
        default=12,
        help=f"requests to send, 2-{MAX_REQUESTS} (default: %(default)s)",
    )
    demo.add_argument("--keep-running", action="store_true", help="leave the servers up until Ctrl-C")
    demo.set_defaults(command=_demo)


def _add_price(commands: _Commands) -> None:
    price = commands.add_parser(
        "price",
        help="print the USD cost of some usage, by component",
        description="Price token usage of a model with the genai-prices data and your overrides, by component.",
    )
    tokens = _at_least(0)
    price.add_argument("model", help="model name as a provider reports it, e.g. gpt-4o-2024-08-06")
    price.add_argument("--input", type=tokens, required=True, metavar="N", help="all input tokens, cached included")
    price.add_argument(
        "--output", type=tokens, required=True, metavar="N", help="all output tokens, reasoning included"
    )
    price.add_argument("--cache-read", type=tokens, default=0, metavar="N", help="of --input, read from the cache")
    price.add_argument("--cache-write", type=tokens, default=0, metavar="N", help="of --input, written to the cache")
    price.add_argument("--cache-write-1h", type=tokens, default=0, metavar="N", help="of --cache-write, with a 1h TTL")
    price.add_argument("--reasoning", type=tokens, default=0, metavar="N", help="of --output, reasoning/thinking")
    price.add_argument("--provider", metavar="P", help="provider kind, e.g. openai, anthropic, bedrock (default: any)")
    price.add_argument("--config", metavar="PATH", help="config file whose pricing.overrides apply")
    price.add_argument("--at", metavar="WHEN", help="ISO-8601 time of the request, for dated or off-peak prices")
    price.set_defaults(command=_price)

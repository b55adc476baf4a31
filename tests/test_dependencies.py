"""What the package imports matches what pyproject.toml declares, and a missing extra fails clearly when used.

Every third-party distribution imported at runtime is a core dependency, or belongs to an extra and is
imported only where that extra is used (inside a function, or in a module only such a function imports).
Every core dependency is imported somewhere (none required for nothing). Without the extras installed the
whole package still imports, and each use of a missing extra names the install line that brings it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "llm_obs_middleware"

MODULES_OF_EXTRAS = {"gateway/server_timeouts.py": "gateway"}
"""Modules that import an extra at module level; only a function that checked for the extra imports them."""

OPTIONAL_WITH_FALLBACK = {"openai": "gateway/demo.py: the demo's client is the OpenAI SDK when installed, else httpx"}
"""Distributions imported only to be used when present, with a fallback when not (no extra needed)."""

EXTRA_IMPORTS = ("uvicorn", "yaml", "psycopg", "psycopg_pool", "botocore", "tiktoken", "openai")
"""Top-level modules of the extras (and optional packages), hidden in the 'without extras' checks."""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return _normalize(match.group(0))


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_requirement_name(req) for req in project["dependencies"]}
    extras = {name: {_requirement_name(req) for req in reqs} for name, reqs in project["optional-dependencies"].items()}
    return core, extras


@cache
def _packages() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def _files_of(distribution: str) -> frozenset[str]:
    return frozenset(str(file) for file in importlib.metadata.distribution(distribution).files or ())


def _distribution_of(module: str) -> str | None:
    """The installed distribution providing ``module`` (namespace packages such as ``opentelemetry`` are
    shared by several: the one holding the deepest matching path wins)."""
    parts = module.split(".")
    candidates = _packages().get(parts[0], [])
    if len(set(candidates)) == 1:
        return _normalize(candidates[0])
    for depth in range(len(parts), 0, -1):
        base = "/".join(parts[:depth])
        for candidate in candidates:
            files = _files_of(candidate)
            if f"{base}.py" in files or f"{base}/__init__.py" in files:
                return _normalize(candidate)
    return None


def _runtime_imports() -> list[tuple[str, int, str, bool]]:
    """(module file, line, imported module, at module level) for each third-party import run at runtime."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        _walk(tree, path.relative_to(PACKAGE).as_posix(), top_level=True, found=found)
    return found


def _walk(node: ast.AST, where: str, *, top_level: bool, found: list[tuple[str, int, str, bool]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for orelse in child.orelse:
                _walk(orelse, where, top_level=top_level, found=found)
            continue
        if isinstance(child, ast.Import):
            modules = [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            # ``from opentelemetry import trace`` imports a module of a namespace package: count the submodule.
            modules = [f"{child.module}.{alias.name}" for alias in child.names]
        else:
            inner = top_level and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            _walk(child, where, top_level=inner, found=found)
            continue
        for module in modules:
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in ("llm_obs_middleware", "__future__"):
                continue
            found.append((where, child.lineno, module, top_level))


def test_every_imported_distribution_is_declared() -> None:
    core, extras = _declared()
    in_extras = set().union(*extras.values())
    undeclared = []
    for where, line, module, top_level in _runtime_imports():
        distribution = _distribution_of(module)
        assert distribution is not None, f"{where}:{line}: {module} comes from no installed distribution"
        if distribution in core:
            continue
        extra = MODULES_OF_EXTRAS.get(where)
        if top_level and extra is not None and distribution in extras[extra]:
            continue
        if not top_level and (distribution in in_extras or module.split(".")[0] in OPTIONAL_WITH_FALLBACK):
            continue
        undeclared.append(f"{where}:{line}: {module} ({distribution}, {'module level' if top_level else 'function'})")
    assert undeclared == []


# Declared for what it installs, not imported itself: the design card's name for the OTLP exporters
# (its HTTP and gRPC parts, which the code imports, are declared beside it).
_UMBRELLAS = {"opentelemetry-exporter-otlp"}


def test_every_core_dependency_is_imported() -> None:
    core, _ = _declared()
    imported = {_distribution_of(module) for _, _, module, _ in _runtime_imports()}
    assert sorted(core - imported - _UMBRELLAS) == []


def test_extras_and_core_do_not_overlap() -> None:
    core, extras = _declared()
    assert {name: sorted(core & packages) for name, packages in extras.items() if core & packages} == {}
    assert extras["fast"] <= core  # kept for old install lines; aiohttp is a core dependency now


_WITHOUT_EXTRAS = """
import importlib, importlib.abc, io, json, pkgutil, sys
from contextlib import redirect_stderr

HIDDEN = set({hidden!r})

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Hide())
import llm_obs_middleware

failed = {{}}
for info in pkgutil.walk_packages(llm_obs_middleware.__path__, "llm_obs_middleware."):
    if info.name.endswith("__main__"):  # runs the command line
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        failed[info.name] = str(exc)

from llm_obs_middleware import Config, LLMObservability, MissingDependencyError
from llm_obs_middleware.gateway import cli

results = {{"failed_imports": failed}}
LLMObservability(lambda scope, receive, send: None, config=Config())  # the middleware needs no extra
for command in (["serve", "--config", {config!r}], ["demo"], ["fake-provider"]):
    err = io.StringIO()
    with redirect_stderr(err):
        status = cli.main(command)
    results[command[0]] = [status, err.getvalue()]
try:
    Config.from_file({yaml_config!r})
except MissingDependencyError as exc:
    results["yaml"] = str(exc)
from llm_obs_middleware.config.exporters import LogStoreConfig
from llm_obs_middleware.exporters.logstore import open_log_store
try:
    open_log_store(LogStoreConfig(url="postgresql://nobody@127.0.0.1:9/none"))
except MissingDependencyError as exc:
    results["postgres"] = str(exc)
print(json.dumps(results))
"""


def test_without_the_extras_the_package_imports_and_each_extra_is_named_when_used(tmp_path: Path) -> None:
    config = tmp_path / "gateway.json"
    config.write_text('{"exporters": {"log_store": {"enabled": false}}}', encoding="utf-8")
    yaml_config = tmp_path / "gateway.yaml"
    yaml_config.write_text("exporters: {}\n", encoding="utf-8")
    script = _WITHOUT_EXTRAS.format(hidden=sorted(EXTRA_IMPORTS), config=str(config), yaml_config=str(yaml_config))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    modules_of_extras = {name.removesuffix(".py").replace("/", ".") for name in MODULES_OF_EXTRAS}
    assert set(results["failed_imports"]) == {f"llm_obs_middleware.{name}" for name in modules_of_extras}
    gateway_hint = "pip install 'llm-obs-middleware[gateway]'"
    for command in ("serve", "demo", "fake-provider"):
        status, stderr = results[command]
        assert status == 2
        assert f"llm-obs {command} runs under uvicorn" in stderr and gateway_hint in stderr
    assert gateway_hint in results["yaml"] and "PyYAML" in results["yaml"]
    assert "pip install 'llm-obs-middleware[postgres]'" in results["postgres"]
    assert not any(tmp_path.glob("*.db"))


@pytest.mark.parametrize("module", sorted(EXTRA_IMPORTS))
def test_the_hidden_modules_are_really_extras(module: str) -> None:
    # The subprocess test hides these; hiding a core dependency there would prove nothing.
    core, _ = _declared()
    distribution = _distribution_of(module)
    assert distribution is not None and distribution not in core

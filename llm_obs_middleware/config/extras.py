"""The ``gateway`` extra (uvicorn, PyYAML): imported only when used, with an error naming the extra when missing.

A middleware needs neither: it runs under the user's own server and takes its config as a ``Config``, a
mapping, or a TOML or JSON file.
"""

from __future__ import annotations

from typing import Any

from llm_obs_middleware.errors import MissingDependencyError

__all__ = ["GATEWAY_EXTRA_HINT", "load_yaml", "require_uvicorn"]

GATEWAY_EXTRA_HINT = "pip install 'llm-obs-middleware[gateway]'"
"""The install line that brings uvicorn and PyYAML (quoted for shells that expand brackets)."""


def load_yaml(text: str) -> Any:
    """Parse YAML with PyYAML's safe loader.

    Raises:
        MissingDependencyError: PyYAML is not installed (the ``gateway`` extra).
        yaml.YAMLError: the text is not valid YAML.
    """
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError(
            f"YAML files need PyYAML, part of the 'gateway' extra: {GATEWAY_EXTRA_HINT} (or use a .toml or .json file)"
        ) from exc
    return yaml.safe_load(text)


def require_uvicorn(what: str) -> None:
    """Check that uvicorn can be imported before ``what`` (e.g. ``llm-obs serve``) needs it.

    Raises:
        MissingDependencyError: uvicorn is not installed (the ``gateway`` extra).
    """
    try:
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} runs under uvicorn, part of the 'gateway' extra: {GATEWAY_EXTRA_HINT}"
        ) from exc

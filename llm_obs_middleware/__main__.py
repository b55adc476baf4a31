"""``python -m llm_obs_middleware``: the ``llm-obs`` command."""

from __future__ import annotations

from llm_obs_middleware.gateway.cli import main

__all__: list[str] = []

raise SystemExit(main())

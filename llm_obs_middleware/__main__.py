"""``python -m llm_obs_middleware``: the ``llm-obs`` command."""

from __future__ import annotations

from .cli import main

__all__: list[str] = []

raise SystemExit(main())

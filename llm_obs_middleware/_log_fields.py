"""The log-record attribute that carries a line's structured fields (``extra={FIELDS_ATTR: {...}}``).

``llm-obs serve --log-format json`` writes them as JSON keys; the text format ignores them.
"""

from __future__ import annotations

__all__ = ["FIELDS_ATTR"]

FIELDS_ATTR = "llm_obs"

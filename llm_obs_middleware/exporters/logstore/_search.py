"""``/logs`` filters beyond the indexed columns: metadata keys, cost/latency/token ranges, free text.

- ``metadata.<key>=<value>``: the record's metadata (the configured ``metadata_headers``) has that
  exact value; several are ANDed.
- ``min_cost``/``max_cost`` (USD), ``min_latency_s``/``max_latency_s`` (seconds), ``min_tokens``/
  ``max_tokens`` (input + output): inclusive bounds. A record with no known cost matches no cost bound.
- ``q=<text>``: the text occurs in a captured input message or in the captured output, compared
  case-insensitively. Content is stored only with ``capture_content`` on (and after ``redact``), so
  without capture ``q`` matches nothing.

How ``q`` is answered, and why: a substring test (``instr``/``strpos`` on ``lower()``) over the
message contents inside the stored JSON, on both databases. It is a scan of the rows the other
filters leave (combine it with ``since``/``until`` on big stores), but it finds any substring,
including parts of words, API-looking tokens and code, the same way on SQLite and PostgreSQL, with no
extra index to keep in step with retention. SQLite FTS5 and PostgreSQL ``to_tsvector`` were set
aside: they match whole words after language-specific stemming, and the two would disagree.
``lower()`` folds ASCII letters on SQLite and every letter on PostgreSQL; that is the one difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

if TYPE_CHECKING:
    from llm_obs_middleware.exporters.logstore._sql import Dialect

__all__ = ["METADATA_PREFIX", "RANGE_PARAMETERS", "LogSearch"]

METADATA_PREFIX: Final = "metadata."
MAX_TEXT_CHARS: Final = 1000
# Query parameter -> (SQL expression, comparison, value type).
_RANGES: Final[dict[str, tuple[str, str, type]]] = {
    "min_cost": ("cost_usd", ">=", float),
    "max_cost": ("cost_usd", "<=", float),
    "min_latency_s": ("duration_s", ">=", float),
    "max_latency_s": ("duration_s", "<=", float),
    "min_tokens": ("(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0))", ">=", int),
    "max_tokens": ("(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0))", "<=", int),
}
RANGE_PARAMETERS: Final = tuple(_RANGES)

# The content search, per database (parameters: the text twice).
_TEXT_SQLITE: Final = (
    "(instr(lower(COALESCE(json_extract(record, '$.output_text'), '')), lower(?)) > 0"
    " OR EXISTS (SELECT 1 FROM json_each(record, '$.input_messages') AS m"
    " WHERE instr(lower(COALESCE(json_extract(m.value, '$.content'), '')), lower(?)) > 0))"
)
_TEXT_POSTGRES: Final = (
    "(strpos(lower(COALESCE(record->>'output_text', '')), lower(%s)) > 0"
    " OR EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN json_typeof(record->'input_messages') = 'array'"
    " THEN record->'input_messages' ELSE '[]'::json END) AS m"
    " WHERE strpos(lower(COALESCE(m->>'content', '')), lower(%s)) > 0))"
)


class LogSearch(msgspec.Struct, frozen=True, kw_only=True):
    """Metadata, range and text filters of one ``/logs`` query (see the module docstring)."""

    metadata: dict[str, str] = {}
    ranges: dict[str, float] = {}
    """Keys of :data:`RANGE_PARAMETERS` and their bounds."""
    text: str | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> LogSearch | None:
        """The filters among ``params`` (query parameters), ``None`` when there are none.

        Raises:
            ValueError: a parameter is malformed; the message starts with its name.
        """
        metadata: dict[str, str] = {}
        ranges: dict[str, float] = {}
        for name, value in params.items():
            if name.startswith(METADATA_PREFIX):
                key = name[len(METADATA_PREFIX) :]
                if not key or '"' in key:
                    raise ValueError(f"{name}: expected metadata.<key> with a non-empty key without '\"'")
                metadata[key] = value
            elif name in _RANGES:
                kind = _RANGES[name][2]
                try:
                    number = kind(value)
                except ValueError:
                    number = -1
                if not number >= 0:  # also NaN
                    expected = "a non-negative integer" if kind is int else "a non-negative number"
                    raise ValueError(f"{name}: expected {expected}, got {value!r}")
                ranges[name] = number
        for low, high in (("min_cost", "max_cost"), ("min_latency_s", "max_latency_s"), ("min_tokens", "max_tokens")):
            if low in ranges and high in ranges and ranges[low] > ranges[high]:
                raise ValueError(f"{low}: greater than {high} ({ranges[low]:g} > {ranges[high]:g})")
        text = params.get("q")
        if text is not None and not 1 <= len(text) <= MAX_TEXT_CHARS:
            raise ValueError(f"q: expected 1 to {MAX_TEXT_CHARS} characters, got {len(text)}")
        if not metadata and not ranges and text is None:
            return None
        return cls(metadata=metadata, ranges=ranges, text=text)

    def clauses(self, dialect: Dialect) -> tuple[list[str], list[Any]]:
        """SQL conditions (ANDed by the caller) and their parameters, for ``dialect``."""
        p = dialect.param
        postgres = p == "%s"
        clauses: list[str] = []
        params: list[Any] = []
        for key, value in self.metadata.items():
            if postgres:
                clauses.append(f"(record->'metadata'->>CAST({p} AS TEXT)) = {p}")
                params += (key, value)
            else:
                clauses.append(f"json_extract(record, {p}) = {p}")
                params += (f'$.metadata."{key}"', value)
        for name, bound in self.ranges.items():
            expression, operator, _ = _RANGES[name]
            clauses.append(f"{expression} {operator} {p}")
            params.append(bound)
        if self.text is not None:
            clauses.append(_TEXT_POSTGRES if postgres else _TEXT_SQLITE)
            params += (self.text, self.text)
        return clauses, params

"""Which provider endpoints a native route forwards without observing them: ``"METHOD[,METHOD] /path"``
patterns matched against the upstream path (relative to ``base_url``, percent-encoded); ``*`` is any
run of characters but ``/``, ``/**`` any rest (or none), ``**`` elsewhere anything."""

from __future__ import annotations

import re
from collections.abc import Sequence

from llm_obs_middleware.errors import ConfigurationError

__all__ = ["PassthroughRules"]

_METHOD = re.compile(r"[A-Z]+")


class PassthroughRules:
    """Compiled endpoint patterns of one provider; :meth:`allowed_methods` answers per path."""

    __slots__ = ("_rules",)

    def __init__(self, patterns: Sequence[str], *, where: str) -> None:
        """Raises ``ConfigurationError`` naming ``where`` (e.g. ``providers.openai.passthrough_endpoints``)."""
        self._rules: list[tuple[frozenset[str], re.Pattern[str]]] = []
        for pattern in patterns:
            methods, _, path = pattern.strip().partition(" ")
            names = frozenset(methods.split(","))
            if not path.startswith("/") or not all(_METHOD.fullmatch(name) for name in names):
                raise ConfigurationError(
                    f"{where}: {pattern!r} is not 'METHOD[,METHOD] /path' (e.g. 'GET,DELETE /files/*')"
                )
            self._rules.append((names, re.compile(_regex(path.strip()))))

    def allowed_methods(self, path: str) -> frozenset[str]:
        """The methods forwarded at ``path`` (empty: the path is not forwarded at all)."""
        found: frozenset[str] = frozenset()
        for methods, regex in self._rules:
            if regex.fullmatch(path):
                found |= methods
        return found


def _regex(path: str) -> str:
    parts = re.split(r"(/\*\*$|\*\*|\*)", path)
    wildcards = {"/**": "(?:/.*)?", "**": ".*", "*": "[^/]*"}
    return "".join(wildcards.get(part) or re.escape(part) for part in parts)

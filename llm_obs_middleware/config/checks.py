"""Readable configuration errors and start-up warnings.

msgspec reports ``Object contains unknown field `api_key` - at `$.providers[...]``` : the entry of a
mapping is ``[...]`` and nothing suggests the fix. :func:`describe_error` names the entry
(``providers.openai: unknown field api_key (did you mean api_keys?)``) by walking the config types
alongside the data. :func:`config_warnings` lists what is valid but probably wrong (no providers, a
provider whose kind needs keys without any).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from llm_obs_middleware.config.settings import Config

__all__ = ["config_warnings", "describe_error"]

DecodeHook = Callable[[type, Any], Any]

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\.\.\.|\d+)\]")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `([^`]*)`$")
_ENUM_VALUE = re.compile(r"^Invalid enum value (.*)$")
# Kinds whose upstream rejects a request without a key (local servers and SigV4-signed Bedrock do not).
_KINDS_NEEDING_KEYS = frozenset(
    {"openai", "azure_openai", "anthropic", "gemini", "cohere", "mistral", "groq", "deepseek"}
)
_CREDENTIAL_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "x-goog-api-key"})


def describe_error(data: Any, exc: msgspec.ValidationError, root: type, dec_hook: DecodeHook) -> str:
    """``<path>: <problem>`` for a validation error of ``data`` against ``root`` (``config`` at the top)."""
    path, problem, at_type = _locate(data, str(exc), root, dec_hook)
    # A __post_init__ check names its own field ("base_url: ..."): fold it into the path.
    field, separator, rest = problem.partition(": ")
    if separator and field.partition(".")[0].partition("[")[0] in _field_names(at_type):
        path, problem = [*path, field], rest
    if (unknown := _UNKNOWN_FIELD.match(problem)) is not None:
        field = unknown.group(1)
        problem = f"unknown field {field}" + _did_you_mean(field, _field_names(at_type))
    elif (enum := _ENUM_VALUE.match(problem)) is not None:
        value = enum.group(1).strip("'\"")
        choices = [str(choice) for choice in typing.get_args(_unwrap(at_type, literal=True))]
        problem = f"invalid value {value!r}" + _did_you_mean(value, choices)
        if choices:
            problem += f"; one of: {', '.join(choices)}"
    return f"{'.'.join(path) or 'config'}: {problem}"


def _locate(data: Any, message: str, type_: Any, dec_hook: DecodeHook) -> tuple[list[str], str, Any]:
    """The named path, the problem and the type at the fault; ``[...]`` entries found by converting each."""
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    problem, raw_path = match.group("message"), match.group("path") or ""
    path: list[str] = []
    for name, index in _SEGMENT.findall(raw_path):
        if name:
            path.append(name)
            type_ = _field_type(type_, name)
            data = data.get(name) if isinstance(data, Mapping) else None
        elif index == "...":
            value_type = _mapping_value_type(type_)
            if not isinstance(data, Mapping) or value_type is None:
                break
            for key, entry in data.items():
                try:
                    msgspec.convert(entry, value_type, dec_hook=dec_hook)
                except (msgspec.ValidationError, ValueError) as entry_exc:
                    # The entry's own error carries the rest of the path, relative to the entry.
                    rest, problem, type_ = _locate(entry, str(entry_exc), value_type, dec_hook)
                    return [*path, str(key), *rest], problem, type_
            break
        else:
            path[-1:] = [f"{path[-1]}[{index}]"] if path else [f"[{index}]"]
            type_ = _list_item_type(type_)
            data = data[int(index)] if isinstance(data, list) and int(index) < len(data) else None
    return path, problem, type_


def _unwrap(type_: Any, *, literal: bool = False) -> Any:
    """The Struct (or, with ``literal``, the ``Literal``) inside an optional or union type."""
    if isinstance(type_, types.UnionType) or typing.get_origin(type_) is typing.Union:
        for member in typing.get_args(type_):
            inner = _unwrap(member, literal=literal)
            if (literal and typing.get_origin(inner) is typing.Literal) or (
                isinstance(inner, type) and issubclass(inner, msgspec.Struct)
            ):
                return inner
    return type_


def _field_type(type_: Any, name: str) -> Any:
    struct = _unwrap(type_)
    if isinstance(struct, type) and issubclass(struct, msgspec.Struct):
        for field in msgspec.structs.fields(struct):
            if field.encode_name == name:
                return field.type
    return None


def _field_names(type_: Any) -> list[str]:
    struct = _unwrap(type_)
    if isinstance(struct, type) and issubclass(struct, msgspec.Struct):
        return [field.encode_name for field in msgspec.structs.fields(struct)]
    return list(getattr(struct, "config_fields", ()))  # a custom-decoded type (ApiKey) names its own


def _container_args(type_: Any, origin: type) -> tuple[Any, ...]:
    """The parameters of ``type_`` (or of its member) of container type ``origin``: ``dict``, ``list``."""
    if typing.get_origin(type_) is origin:
        return typing.get_args(type_)
    if isinstance(type_, types.UnionType) or typing.get_origin(type_) is typing.Union:
        for member in typing.get_args(type_):
            if typing.get_origin(member) is origin:
                return typing.get_args(member)
    return ()


def _mapping_value_type(type_: Any) -> Any:
    args = _container_args(type_, dict)
    return args[1] if len(args) == 2 else None


def _list_item_type(type_: Any) -> Any:
    args = _container_args(type_, list)
    return args[0] if args else None


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def config_warnings(config: Config) -> list[str]:
    """What a valid config probably gets wrong, one line each, with the path at fault."""
    warnings: list[str] = []
    if not config.providers:
        warnings.append("providers: none configured; every LLM request will be answered 404 (unknown model)")
    for name, provider in config.providers.items():
        has_credential_header = any(header.lower() in _CREDENTIAL_HEADERS for header in provider.headers)
        if provider.kind in _KINDS_NEEDING_KEYS and not provider.api_keys and not has_credential_header:
            warnings.append(
                f"providers.{name}: no api_keys; {provider.kind} rejects requests without a key "
                "(the client's own credentials are not forwarded)"
            )
    return warnings

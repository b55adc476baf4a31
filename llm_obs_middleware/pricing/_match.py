"""Model-id and provider-name normalisation shared by the price sources.

Providers name one model many ways: dated snapshots (``gpt-4o-2024-08-06``,
``claude-sonnet-4-20250514``, Vertex's ``claude-sonnet-4@20250514``), Bedrock ids with a
cross-region prefix, a vendor prefix and a version suffix (``us.anthropic.claude-sonnet-4-20250514-v1:0``),
Gemini's ``models/`` prefix, router-style ``vendor/model`` names and ``-latest`` aliases.
:func:`model_candidates` lists the forms to try, most specific first, so a price written for a dated
id wins over one written for the family.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["UNPRICED_KINDS", "canonical_provider", "model_candidates"]

UNPRICED_KINDS: Final = frozenset({"ollama", "vllm"})
"""Self-hosted servers: a per-token list price for the same model name elsewhere would be wrong."""

# gen_ai.provider.name values (what the record's provider holds when no provider kind is known) and
# genai-prices provider ids, mapped to our provider kinds (config.ProviderKind).
_PROVIDER_ALIASES: Final = {
    "azure.ai.openai": "azure_openai",
    "azure": "azure_openai",
    "gcp.gemini": "gemini",
    "gcp.vertex_ai": "gemini",
    "google": "gemini",
    "aws.bedrock": "bedrock",
    "aws": "bedrock",
    "mistral_ai": "mistral",
}
# Bedrock: optional cross-region inference prefix, vendor prefix, then the model and its version.
# https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html
_BEDROCK: Final = re.compile(
    r"^(?:(?:us|eu|apac|us-gov|global|jp|au|ca)\.)?"
    r"(?:anthropic|amazon|meta|cohere|mistral|ai21|deepseek|openai|qwen|writer)\."
    r"(?P<model>.+?)(?:-v\d+(?::\d+)?|:\d+)?$"
)
_REGION: Final = re.compile(r"^(?:us|eu|apac|us-gov|global|jp|au|ca)\.(?=[a-z0-9-]+\.)")
# Dated snapshots: -2024-08-06 (OpenAI), -20250514 (Anthropic), @20250514 (Vertex), -0613 (older OpenAI).
_DATE_SUFFIX: Final = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|20\d{6})|-(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))$")
_LATEST_SUFFIX: Final = "-latest"


def canonical_provider(name: str) -> str:
    """Our provider kind for a provider kind, a ``gen_ai.provider.name`` or a genai-prices id."""
    return _PROVIDER_ALIASES.get(name, name)


def model_candidates(model: str) -> list[str]:
    """Lower-cased forms of ``model`` to look up, the name as given first and the barest family last."""
    name = model.strip().lower()
    found = [name]

    def add(candidate: str) -> None:
        if candidate and candidate not in found:
            found.append(candidate)

    if name.startswith("models/"):  # Gemini REST names
        name = name[len("models/") :]
        add(name)
    regionless = _REGION.sub("", name)
    add(regionless)
    bedrock = _BEDROCK.match(name)
    if bedrock is not None:
        name = bedrock.group("model")
        add(name)
    elif "/" in name:  # router-style "vendor/model"
        name = name.rsplit("/", 1)[1]
        add(name)
    if name.endswith(_LATEST_SUFFIX):
        add(name[: -len(_LATEST_SUFFIX)])
    undated = _DATE_SUFFIX.sub("", name)
    add(undated)
    return found

"""Model-id normalisation: the forms a price lookup tries, most specific first."""

from __future__ import annotations

import pytest

from llm_obs_middleware.pricing._match import canonical_provider, model_candidates


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-2024-08-06", ["gpt-4o-2024-08-06", "gpt-4o"]),
        ("GPT-4o-Mini", ["gpt-4o-mini"]),
        ("gpt-4-0613", ["gpt-4-0613", "gpt-4"]),
        ("claude-sonnet-4-20250514", ["claude-sonnet-4-20250514", "claude-sonnet-4"]),
        ("claude-sonnet-4@20250514", ["claude-sonnet-4@20250514", "claude-sonnet-4"]),
        ("claude-3-5-haiku-latest", ["claude-3-5-haiku-latest", "claude-3-5-haiku"]),
        (
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            [
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                "anthropic.claude-sonnet-4-20250514-v1:0",
                "claude-sonnet-4-20250514",
                "claude-sonnet-4",
            ],
        ),
        (
            "apac.anthropic.claude-3-5-sonnet-20240620-v1:0",
            [
                "apac.anthropic.claude-3-5-sonnet-20240620-v1:0",
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                "claude-3-5-sonnet-20240620",
                "claude-3-5-sonnet",
            ],
        ),
        (
            "eu.meta.llama3-2-3b-instruct-v1:0",
            ["eu.meta.llama3-2-3b-instruct-v1:0", "meta.llama3-2-3b-instruct-v1:0", "llama3-2-3b-instruct"],
        ),
        ("amazon.nova-pro-v1:0", ["amazon.nova-pro-v1:0", "nova-pro"]),
        ("models/gemini-2.5-pro", ["models/gemini-2.5-pro", "gemini-2.5-pro"]),
        ("openai/gpt-4o-mini", ["openai/gpt-4o-mini", "gpt-4o-mini"]),
        ("deepseek-r1-0528", ["deepseek-r1-0528", "deepseek-r1"]),
        # Not dates: a four-digit suffix that is no month-day, a version number.
        ("qwen3-32b-2507", ["qwen3-32b-2507"]),
        ("gemini-2.5-flash", ["gemini-2.5-flash"]),
    ],
)
def test_model_candidates(model: str, expected: list[str]) -> None:
    assert model_candidates(model) == expected


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("aws.bedrock", "bedrock"),
        ("aws", "bedrock"),
        ("gcp.gemini", "gemini"),
        ("azure.ai.openai", "azure_openai"),
        ("mistral_ai", "mistral"),
        ("openai", "openai"),
        ("my-proxy", "my-proxy"),
    ],
)
def test_canonical_provider(name: str, kind: str) -> None:
    assert canonical_provider(name) == kind

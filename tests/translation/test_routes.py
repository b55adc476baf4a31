"""How a model name finds a translated route: ``{provider}/{model}``, aliases first, the per-route rule."""

from __future__ import annotations

from llm_obs_middleware import Config
from llm_obs_middleware.routing.targets import Routes


def routes() -> Routes:
    return Routes(
        Config.from_dict(
            {
                "providers": {
                    "anthropic": {"kind": "anthropic", "base_url": "http://anthropic.test", "api_keys": ["k"]},
                    "openai": {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": ["k"]},
                },
                "models": {
                    "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5", "unsupported_params": "error"},
                    "gpt": {"provider": "openai"},
                },
                "default_provider": "openai",
                "routing": {"unsupported_params": "drop"},
            }
        )
    )


def test_provider_model_form_names_a_configured_provider() -> None:
    table = routes()
    route = table.provider_model("anthropic/claude-haiku-4-5")
    assert route is not None
    [deployment] = route.deployments
    assert (deployment.provider.name, deployment.model, route.unsupported) == ("anthropic", "claude-haiku-4-5", "drop")
    # The same (provider, model) keeps one health entry, as native routes do.
    again = table.provider_model("anthropic/claude-haiku-4-5")
    assert again is not None and again.deployments[0] is deployment


def test_model_names_with_slashes_that_name_no_provider_are_left_alone() -> None:
    table = routes()
    assert table.provider_model("meta-llama/Llama-3.1-8B") is None  # goes on to default_provider
    assert table.provider_model("anthropic/") is None
    assert table.provider_model("claude") is None


def test_unsupported_params_rule_per_alias_with_the_routing_default() -> None:
    table = routes()
    assert (table.aliases["claude"].unsupported, table.aliases["gpt"].unsupported) == ("error", "drop")
    default = table.for_default("some-model")
    assert default is not None and default.unsupported == "drop"

"""An existing FastAPI service that adds LLM observability with one line.

Run (with ``llm-obs fake-provider --port 9100`` in another shell, or a real OpenAI key)::

    uvicorn sample_apps.fastapi_app:app --port 8000

Then ``/llm/v1/...`` is routed to the provider (point the openai SDK at http://127.0.0.1:8000/llm/v1),
``/hello`` is the app's own route, untouched.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from llm_obs_middleware import Config, LLMObservability

config = Config.from_dict(
    {
        "route_prefix": "/llm",
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:9100/v1"),
                "api_keys": [os.environ.get("OPENAI_API_KEY", "sk-fake")],
            }
        },
        "models": {"gpt-4o-mini": {"provider": "openai"}, "gpt-4o": {"provider": "openai"}},
        "exporters": {"log_store": {"url": "sqlite:///fastapi_app_llm.db"}},
    }
)

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "the app's own route, untouched by the stack"}


app.add_middleware(LLMObservability, config=config)

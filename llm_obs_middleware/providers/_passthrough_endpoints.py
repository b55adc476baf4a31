"""What each provider's API offers besides the LLM endpoints we observe: the endpoints a native route
forwards by default (recorded as ``http`` operations), as ``"METHOD[,METHOD] /path"`` relative to the
provider's ``base_url``. ``*`` is any run of characters but ``/``; ``/**`` is any rest, or none.

A provider's ``passthrough_endpoints`` config replaces its list; anything else answers 404/405 without
an upstream call (issue 13, finding 14).
"""

from __future__ import annotations

__all__ = ["ANTHROPIC", "AZURE_OPENAI", "BEDROCK", "COHERE", "GEMINI", "OLLAMA", "OPENAI"]

_ANY = "GET,POST,DELETE"

# https://platform.openai.com/docs/api-reference (base_url ends in /v1), plus what OpenAI-compatible
# servers (vLLM, Mistral, Groq...) commonly add. Not the admin API (/organization/..., projects, keys):
# a gateway's key has no business there.
OPENAI = (
    "GET /models",
    "GET,DELETE /models/*",
    "POST /completions",
    "POST /moderations",
    "POST /images/generations",
    "POST /images/edits",
    "POST /images/variations",
    "POST /audio/speech",
    "POST /audio/transcriptions",
    "POST /audio/translations",
    "GET,POST /files",
    "GET,DELETE /files/*",
    "GET /files/*/content",
    "POST /uploads",
    "POST /uploads/*/parts",
    "POST /uploads/*/complete",
    "POST /uploads/*/cancel",
    "GET,POST /batches",
    "GET /batches/*",
    "POST /batches/*/cancel",
    "GET /chat/completions",
    "GET,POST,DELETE /chat/completions/*",
    "GET /chat/completions/*/messages",
    "GET,DELETE /responses/*",
    "POST /responses/*/cancel",
    "GET /responses/*/input_items",
    "POST /responses/input_tokens",
    f"{_ANY} /conversations/**",
    f"{_ANY} /fine_tuning/**",
    f"{_ANY} /vector_stores/**",
    f"{_ANY} /assistants/**",
    f"{_ANY} /threads/**",
    f"{_ANY} /evals/**",
    f"{_ANY} /containers/**",
    f"{_ANY} /videos/**",
    f"{_ANY} /skills/**",
    f"{_ANY} /chatkit/**",
    "POST /realtime/**",
    "POST /fim/completions",
    "POST /rerank",
    "POST /score",
    "POST /tokenize",
    "POST /detokenize",
)

# Azure OpenAI's data plane lives under /openai (deployments, the v1 API, files, batches...).
AZURE_OPENAI = (f"{_ANY} /openai/**",)

# https://docs.anthropic.com/en/api (base_url is the host). Not the Admin API (/v1/organizations/...).
ANTHROPIC = (
    "POST /v1/messages/count_tokens",
    "POST /v1/complete",
    "GET /v1/models",
    "GET /v1/models/*",
    "GET,POST /v1/messages/batches",
    "GET,DELETE /v1/messages/batches/*",
    "GET /v1/messages/batches/*/results",
    "POST /v1/messages/batches/*/cancel",
    "GET,POST /v1/files",
    "GET,DELETE /v1/files/*",
    "GET /v1/files/*/content",
    f"{_ANY} /v1/skills/**",
    f"{_ANY} /v1/agents/**",
    f"{_ANY} /v1/sessions/**",
    f"{_ANY} /v1/environments/**",
    f"{_ANY} /v1/memory_stores/**",
    f"{_ANY} /v1/vaults/**",
)

# https://ai.google.dev/api (v1, v1beta, v1alpha).
GEMINI = (
    "GET /v1*/models",
    "GET /v1*/models/*",
    "POST /v1*/models/*:countTokens",
    "POST /v1*/models/*:batchGenerateContent",
    "POST /v1*/models/*:asyncBatchEmbedContent",
    "POST /v1*/models/*:predict",
    "POST /v1*/models/*:predictLongRunning",
    "GET,POST /v1*/files",
    "GET,DELETE /v1*/files/*",
    "POST /upload/v1*/files",
    "GET,POST,PATCH,DELETE /v1*/cachedContents/**",
    "GET,POST,PATCH,DELETE /v1*/tunedModels/**",
    f"{_ANY} /v1*/batches/**",
    "GET,DELETE /v1*/operations/**",
    f"{_ANY} /v1*/fileSearchStores/**",
)

# https://docs.aws.amazon.com/bedrock/latest/APIReference/API_Operations_Amazon_Bedrock_Runtime.html
BEDROCK = (
    "POST /model/*/invoke",
    "POST /model/*/invoke-with-response-stream",
    "POST /model/*/count-tokens",
    "POST /guardrail/*/version/*/apply",
    "GET,POST /async-invoke",
    "GET /async-invoke/*",
)

# https://docs.cohere.com/reference (v1 and v2).
COHERE = (
    "POST /v1/chat",
    "POST /v1/embed",
    "POST /v1/generate",
    "POST /v1/rerank",
    "POST /v2/rerank",
    "POST /v1/classify",
    "POST /v1/summarize",
    "POST /v1/tokenize",
    "POST /v1/detokenize",
    "GET /v1/models",
    "GET /v1/models/*",
    "POST /v1/check-api-key",
    f"{_ANY} /v1/datasets/**",
    f"{_ANY} /v1/embed-jobs/**",
    f"{_ANY} /v1/connectors/**",
    f"{_ANY} /v1/finetuning/**",
)

# https://github.com/ollama/ollama/blob/main/docs/api.md, and its OpenAI-compatible /v1 API.
OLLAMA = (
    "GET,HEAD /",
    "GET /api/tags",
    "GET /api/ps",
    "GET /api/version",
    "POST /api/show",
    "POST /api/create",
    "POST /api/copy",
    "DELETE /api/delete",
    "POST /api/pull",
    "POST /api/push",
    "HEAD,POST /api/blobs/*",
    "GET /v1/models",
    "GET /v1/models/*",
    "POST /v1/completions",
)

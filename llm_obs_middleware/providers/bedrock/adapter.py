"""AWS Bedrock Runtime: Converse, ConverseStream and InvokeModel of embedding models, re-signed upstream with SigV4.

Native routes (relative to ``/{provider}``): ``POST /model/{modelId}/converse`` and
``POST /model/{modelId}/converse-stream``, the paths boto3's ``bedrock-runtime`` client calls with
``endpoint_url="http://gateway/{provider}"``, and ``POST /model/{modelId}/invoke`` when the model is an
embedding model (``amazon.titan-embed-*``, ``cohere.embed-*``; other InvokeModel calls are proxied
unobserved). Titan reports ``inputTextTokenCount`` in its body; Cohere on Bedrock only in the
``x-amzn-bedrock-input-token-count`` response header. The model id is URL-encoded in the path (``%3A`` for the
``:`` of ``...-v1:0``; ARNs carry ``/`` as ``%2F``) and is re-encoded the same way upstream.

The client's own SigV4 signature is for the gateway's host, so it never goes upstream: the gateway
signs each request again (service ``bedrock``) with the provider's ``aws_*`` credentials or, when
the config has none, ``api_keys`` (Bedrock API keys, sent as ``Authorization: Bearer``), the
standard ``AWS_*`` environment variables or botocore's credential chain (profiles, SSO, web identity,
container and instance roles), looked up once at start-up (a provider with none is a configuration
error naming it); see :mod:`.auth`. Signing uses botocore (the ``bedrock`` extra).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

import msgspec

from llm_obs_middleware.errors import ConfigurationError, SchemaError
from llm_obs_middleware.providers import _passthrough_endpoints
from llm_obs_middleware.providers._media import inline_image, url_image
from llm_obs_middleware.providers.base import AdapterDefaults, Endpoint, PreparedBody
from llm_obs_middleware.providers.bedrock.auth import Auth, resolve
from llm_obs_middleware.providers.bedrock.errors import ErrorObserver, stream_exception
from llm_obs_middleware.providers.bedrock.observe import (
    ConverseJSONObserver,
    ConverseStreamObserver,
    InvokeEmbedObserver,
)
from llm_obs_middleware.providers.bedrock.wire import (
    CapturedImage,
    ConverseRequest,
    InvokeEmbedRequest,
    Message as WireMessage,
    SystemBlock,
)
from llm_obs_middleware.providers.translate_base import compact_json
from llm_obs_middleware.records.schema import (
    ExtraValue,
    ImageRef,
    Message,
    NormalizedRequest,
    RequestParams,
    ToolCall,
)
from llm_obs_middleware.upstream.paths import encode_path

if TYPE_CHECKING:
    import httpx

    from llm_obs_middleware.asgi.state import Exchange, ResponseObserver
    from llm_obs_middleware.config.settings import ProviderConfig

__all__ = [
    "ADAPTERS",
    "CONVERSE",
    "CONVERSE_STREAM",
    "INVOKE_EMBEDDINGS",
    "PATH",
    "BedrockAdapter",
    "embedding_family",
]

logger = logging.getLogger("llm_obs_middleware.providers.bedrock")

CONVERSE = "bedrock.converse"
"""``Endpoint.api`` of ``/model/{modelId}/converse``."""
CONVERSE_STREAM = "bedrock.converse_stream"
"""``Endpoint.api`` of ``/model/{modelId}/converse-stream``."""
INVOKE_EMBEDDINGS = "bedrock.invoke_model"
"""``Endpoint.api`` of ``/model/{modelId}/invoke`` for an embedding model."""
PATH = re.compile(r"^/model/(.+)/(converse|converse-stream|invoke)$")
"""A Bedrock Runtime path this adapter observes: model id, operation."""
_LABELLED = re.compile(r"^/model/(.+)/([a-z-]+)$")  # any runtime operation on a model
_API = {"converse": CONVERSE, "converse-stream": CONVERSE_STREAM, "invoke": INVOKE_EMBEDDINGS}
# Model ids may carry a cross-region prefix (us.cohere.embed-v4:0) or be URL-encoded: match the family.
_EMBEDDING_FAMILY = re.compile(r"(?:^|[./%])(amazon\.titan-embed|cohere\.embed)-")
_STREAM_TYPE = b"application/vnd.amazon.eventstream"
# SigV4 headers a client signed for the gateway: never forwarded (the router drops its Authorization).
_CLIENT_SIGNING = ("x-amz-date", "x-amz-security-token", "x-amz-content-sha256")
_MAX_CACHED = 64
_decode_request = msgspec.json.Decoder(ConverseRequest).decode
_decode_messages = msgspec.json.Decoder(list[WireMessage]).decode
_decode_system = msgspec.json.Decoder(list[SystemBlock]).decode


_decode_invoke_request = msgspec.json.Decoder(InvokeEmbedRequest).decode


def embedding_family(model: str) -> str | None:
    """``"titan"`` or ``"cohere"`` for a Bedrock embedding model id, else ``None``."""
    found = _EMBEDDING_FAMILY.search(model)
    if found is None:
        return None
    return "titan" if found.group(1).startswith("amazon") else "cohere"


def _join(raw: list[msgspec.Raw]) -> bytes:
    return b"[" + b",".join(bytes(part) for part in raw) + b"]"


def _image(image: CapturedImage) -> ImageRef | None:
    """An ``image`` block: base64 ``bytes`` digested, an ``s3Location`` kept as its URI."""
    media_type = f"image/{image.format}" if image.format else None
    source = image.source
    if source is None:
        return None
    if source.bytes is not None:
        return inline_image(source.bytes, media_type)
    if source.s3_location is not None and source.s3_location.uri:
        return url_image(source.s3_location.uri, media_type)
    return None


def _captured(system: list[msgspec.Raw] | None, raw_messages: list[msgspec.Raw]) -> list[Message]:
    """Roles, text, tool calls and tool results (each result as a ``tool`` message, as in OpenAI's shape)."""
    messages: list[Message] = []
    if system:
        text = "".join(block.text for block in _decode_system(_join(system)) if block.text)
        if text:
            messages.append(Message(role="system", content=text))
    for item in _decode_messages(_join(raw_messages)) if raw_messages else ():
        texts: list[str] = []
        calls: list[ToolCall] = []
        images: list[ImageRef] = []
        results = 0
        for block in item.content:
            if block.text is not None:
                texts.append(block.text)
            elif block.image is not None and (image := _image(block.image)) is not None:
                images.append(image)
            elif block.tool_use is not None:
                use = block.tool_use
                calls.append(ToolCall(id=use.tool_use_id, name=use.name, arguments=compact_json(use.input)))
            elif block.tool_result is not None:
                result = block.tool_result
                parts = [part.text if part.text is not None else compact_json(part.json) for part in result.content]
                messages.append(Message(role="tool", content="".join(parts) or None, tool_call_id=result.tool_use_id))
                results += 1
        if texts or calls or images or not results:  # a message of tool results only became "tool" messages
            messages.append(Message(role=item.role, content="".join(texts) or None, tool_calls=calls, images=images))
    return messages


class BedrockAdapter(AdapterDefaults):
    """Bedrock Runtime's Converse API (``gen_ai.provider.name`` ``aws.bedrock``).

    Args:
        environ: where ``AWS_*`` credentials are looked up when a provider's config has none
            (default: ``os.environ``, read once per provider when its first request is signed; only
            then is botocore's credential chain asked too).
    """

    provider_name = "aws.bedrock"
    response_header_extras: Mapping[bytes, str] = {b"x-amzn-requestid": "bedrock.request_id"}
    passthrough_endpoints: Sequence[str] = _passthrough_endpoints.BEDROCK

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._auth: dict[int, tuple[ProviderConfig, Auth]] = {}

    def match(self, method: str, path: str) -> Endpoint | None:
        if method != "POST":
            return None
        found = PATH.match(path)
        if found is None:
            return None
        if found.group(2) == "invoke":
            if embedding_family(found.group(1)) is None:
                return None  # InvokeModel of a chat model: its body is the model's own format, not observed
            return Endpoint(INVOKE_EMBEDDINGS, "embeddings", path)
        # The path rides in the endpoint so decode_request can read the model from it.
        return Endpoint(_API[found.group(2)], "chat", path)

    def path_model(self, endpoint: Endpoint, path: str) -> str | None:
        found = PATH.match(path)
        return found.group(1) if found is not None else None

    def upstream_path(self, endpoint: Endpoint, path: str, model: str) -> str:
        found = PATH.match(path)
        # Encoded as botocore encodes a URI label: everything but unreserved characters.
        return f"/model/{quote(model, safe='')}/{found.group(2)}" if found else encode_path(path)

    def passthrough_path(self, path: str) -> str:
        found = _LABELLED.match(path)  # the model id encoded as upstream_path does
        return f"/model/{quote(found.group(1), safe='')}/{found.group(2)}" if found else encode_path(path)

    def is_stream(self, content_type: bytes) -> bool:
        return content_type.startswith(_STREAM_TYPE)

    def stream_error(self, content_type: bytes, message: str, error_type: str) -> bytes:
        return stream_exception(message) if content_type.startswith(_STREAM_TYPE) else b""

    def decode_request(self, endpoint: Endpoint, body: bytes, *, capture_content: bool) -> NormalizedRequest:
        if endpoint.api == INVOKE_EMBEDDINGS:
            return self._decode_embeddings(endpoint, body)
        try:
            request = _decode_request(body)
            messages = _captured(request.system, request.messages) if capture_content else None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"request body is not a valid {endpoint.api} request: {exc}") from None
        config = request.inference_config
        tools = request.tool_config
        choice = tools.tool_choice if tools is not None else None
        return NormalizedRequest(
            operation="chat",
            model=self.path_model(endpoint, endpoint.upstream_path),
            stream=endpoint.api == CONVERSE_STREAM,
            include_usage=True,  # the final metadata event always carries usage
            params=RequestParams(
                temperature=config.temperature if config else None,
                top_p=config.top_p if config else None,
                max_tokens=config.max_tokens if config else None,
                stop=config.stop_sequences if config else None,
                # cachePoint entries mark a cache boundary; they are not tools.
                tool_definitions=sum(1 for tool in tools.tools if tool.cache_point is None) if tools else 0,
                tool_choice=next(iter(choice), None) if choice else None,  # {"auto": {}} -> "auto"
            ),
            message_count=len(request.messages),
            messages=messages,
            extra=_request_extra(request),
        )

    def _decode_embeddings(self, endpoint: Endpoint, body: bytes) -> NormalizedRequest:
        try:
            request = _decode_invoke_request(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"request body is not a valid {endpoint.api} request: {exc}") from None
        count = len(request.texts) if request.texts is not None else int(request.input_text is not None)
        model = self.path_model(endpoint, endpoint.upstream_path)
        return NormalizedRequest(operation="embeddings", model=model, message_count=count)

    def observer(self, endpoint: Endpoint, exchange: Exchange, *, streamed: bool, status: int) -> ResponseObserver:
        # Bedrock answers name no model: report the one the request went to.
        model = exchange.served_model or exchange.requested_model or self.path_model(endpoint, endpoint.upstream_path)
        if status >= 400:
            # Bedrock names the error in a header (x-amzn-errortype), its body usually only has a message.
            header_type = next(
                (v.decode("latin-1") for k, v in exchange.response_headers if k.lower() == b"x-amzn-errortype"), None
            )
            return ErrorObserver(model, status, header_type)
        if endpoint.api == INVOKE_EMBEDDINGS:
            return InvokeEmbedObserver(exchange, model)
        capture = exchange.request is not None and exchange.request.messages is not None
        if streamed:
            return ConverseStreamObserver(exchange, model, capture)
        return ConverseJSONObserver(model, capture)

    def prepare_body(self, endpoint: Endpoint, request: NormalizedRequest, body: bytes, model: str) -> PreparedBody:
        return PreparedBody(body, False)  # the model is in the URL (see upstream_path)

    def auth_headers(self, api_key: str) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + api_key.encode())]

    def prepare(self, name: str, provider: ProviderConfig) -> None:
        """Resolve the provider's credentials now (config, ``AWS_*``, botocore's chain), so a gateway without any
        fails at start-up naming the provider instead of sending unsigned requests."""
        auth = _resolve(provider, self._environ)
        if auth is None:
            raise ConfigurationError(
                f"bedrock provider {name!r} has no credentials: set aws_access_key_id/aws_secret_access_key "
                "(or api_keys) in its config, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                "AWS_BEARER_TOKEN_BEDROCK in the environment, or an AWS profile, SSO, web identity or role "
                "botocore's credential chain finds"
            )
        self._remember(provider, auth)

    def _remember(self, provider: ProviderConfig, auth: Auth) -> tuple[ProviderConfig, Auth]:
        if len(self._auth) >= _MAX_CACHED:
            self._auth.clear()
        cached = self._auth[id(provider)] = (provider, auth)
        return cached

    def sign(self, request: httpx.Request, provider: ProviderConfig) -> None:
        """Replace the client's signing headers with our own SigV4 signature (or Bedrock API key)."""
        cached = self._auth.get(id(provider))
        if cached is None or cached[0] is not provider:
            # Not prepared at start-up (an adapter used on its own): resolve on first use.
            auth = _resolve(provider, self._environ)
            if auth is None:
                logger.warning(
                    "bedrock provider at %s has no credentials (aws_* or api_keys in its config, or "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_BEARER_TOKEN_BEDROCK in the environment): "
                    "requests go upstream unsigned",
                    provider.base_url,
                )
                auth = Auth()
            cached = self._remember(provider, auth)
        headers = request.headers
        for name in _CLIENT_SIGNING:
            if name in headers:
                del headers[name]
        cached[1].apply(request)


def _request_extra(request: ConverseRequest) -> dict[str, ExtraValue]:
    config = request.performance_config
    if config is None or config.latency is None:
        return {}
    return {"bedrock.request.performance_latency": config.latency}


def _resolve(provider: ProviderConfig, environ: Mapping[str, str] | None) -> Auth | None:
    """Credentials of a provider (see :mod:`.auth`); botocore's chain only with the process environment."""
    return resolve(provider, os.environ if environ is None else environ, chain=environ is None)


ADAPTERS = {"bedrock": BedrockAdapter()}

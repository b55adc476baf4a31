"""How the gateway authenticates its Bedrock requests: SigV4 (botocore) or a Bedrock API key.

A provider's credentials, first found wins:

1. ``aws_access_key_id`` / ``aws_secret_access_key`` (+ ``aws_session_token``) in its config;
2. ``api_keys`` in its config (Bedrock API keys; the router sends them as ``Authorization: Bearer``);
3. ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``), then
   ``AWS_BEARER_TOKEN_BEDROCK``, in the environment;
4. botocore's credential chain (``botocore.session.Session().get_credentials()``): the shared
   ``credentials``/``config`` files with ``AWS_PROFILE`` (SSO and ``credential_process`` profiles, role
   assumption), web identity (``AWS_WEB_IDENTITY_TOKEN_FILE``), the ECS/EKS container endpoint and EC2
   instance metadata. Looked up when the provider is first prepared or used, never at import; only
   when the adapter reads the process environment (no ``environ`` mapping given).

Each request is signed with the credentials' current values (``get_frozen_credentials()``), so
credentials that expire (SSO, roles, instance profiles) are refreshed by botocore as they near expiry.
The region: ``aws_region``, else the ``bedrock-runtime.<region>.amazonaws.com`` host, else
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else the profile's ``region``. botocore is the ``bedrock`` extra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llm_obs_middleware.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import httpx

    from llm_obs_middleware.config.settings import ProviderConfig

__all__ = ["Auth", "Bearer", "SigV4", "resolve"]

_REGION_HOST = re.compile(r"(?:^|\.)bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com")
_EXTRA = "signing Bedrock requests with AWS SigV4 needs botocore: pip install 'llm-obs-middleware[bedrock]'"


class Auth:
    """How one provider's requests are authenticated (base: leave them as the router built them)."""

    __slots__ = ()

    def apply(self, request: httpx.Request) -> None:
        """Set the credentials on the request."""


class Bearer(Auth):
    """A Bedrock API key from the environment."""

    __slots__ = ("_value",)

    def __init__(self, token: str) -> None:
        self._value = f"Bearer {token}"

    def apply(self, request: httpx.Request) -> None:
        request.headers["authorization"] = self._value


class SigV4(Auth):
    """SigV4 (service ``bedrock``) with a botocore credentials object, static or refreshable."""

    __slots__ = ("_credentials", "_region", "_request_type", "_signer_type")

    def __init__(self, credentials: Any, region: str) -> None:
        try:
            from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
            from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
        except ImportError as exc:
            raise MissingDependencyError(_EXTRA) from exc
        self._credentials = credentials
        self._region = region
        self._signer_type: Any = SigV4Auth
        self._request_type: Any = AWSRequest

    @classmethod
    def static(cls, access_key: str, secret_key: str, token: str | None, region: str) -> SigV4:
        try:
            from botocore.credentials import Credentials  # type: ignore[import-untyped]
        except ImportError as exc:
            raise MissingDependencyError(_EXTRA) from exc
        return cls(Credentials(access_key, secret_key, token), region)

    def apply(self, request: httpx.Request) -> None:
        # The values in force now: a refreshable credential refreshes itself here when near expiry.
        signer = self._signer_type(self._credentials.get_frozen_credentials(), "bedrock", self._region)
        # Sign only what no hop rewrites: host, content type, and the x-amz-* headers SigV4 adds.
        headers = {"host": request.headers["host"]}
        if "content-type" in request.headers:
            headers["content-type"] = request.headers["content-type"]
        signed = self._request_type(method=request.method, url=str(request.url), headers=headers, data=request.content)
        signer.add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            value = signed.headers.get(name)
            if value is not None:
                request.headers[name.lower()] = value


def resolve(provider: ProviderConfig, env: Mapping[str, str], *, chain: bool) -> Auth | None:
    """The provider's credentials in the order of the module docstring (``chain``: whether botocore's
    credential chain may be asked); ``None`` when there are none."""
    if provider.aws_access_key_id is not None and provider.aws_secret_access_key is not None:
        token = provider.aws_session_token.get_secret_value() if provider.aws_session_token else None
        secret = provider.aws_secret_access_key.get_secret_value()
        return SigV4.static(provider.aws_access_key_id, secret, token, _region(provider, env, None))
    if provider.api_keys:
        return Auth()  # the router already sent the first key as a bearer token
    access_key, secret_key = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if access_key and secret_key:
        token = env.get("AWS_SESSION_TOKEN") or None
        return SigV4.static(access_key, secret_key, token, _region(provider, env, None))
    bearer = env.get("AWS_BEARER_TOKEN_BEDROCK")
    if bearer:
        return Bearer(bearer)
    if not chain:
        return None
    try:
        from botocore.session import Session  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingDependencyError(_EXTRA) from exc
    session = Session()
    credentials = session.get_credentials()
    if credentials is None:
        return None
    return SigV4(credentials, _region(provider, env, session))


def _region(provider: ProviderConfig, env: Mapping[str, str], session: Any) -> str:
    if provider.aws_region:
        return provider.aws_region
    found = _REGION_HOST.search(urlsplit(provider.base_url).hostname or "")
    region = found.group(1) if found is not None else env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region and session is not None:
        region = session.get_config_variable("region")  # the profile's region
    if not region:
        raise ConfigurationError(
            f"bedrock provider at {provider.base_url}: no signing region (set aws_region, or AWS_REGION)"
        )
    return str(region)

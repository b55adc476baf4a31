"""Access to the gateway's admin routes (``/logs``, ``/logs/stats``, ``/sessions``, optionally ``/metrics``).

With ``admin_key`` configured, a request must present it (``Authorization: Bearer <key>`` or
``x-admin-key: <key>``), compared in constant time; anything else gets a 401 JSON error. Without a
key the admin routes are for the local machine only: the gateway refuses to start on a non-loopback
address (:func:`check_exposure`, called by ``llm-obs serve``) unless ``allow_open_admin`` is set,
and, however it was started, answers admin requests that reach it on a non-loopback address with a
403 JSON error.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from llm_obs_middleware.errors import ConfigurationError

if TYPE_CHECKING:
    from llm_obs_middleware.config.settings import Config

__all__ = ["Endpoint", "check_exposure", "guard", "is_loopback"]

Endpoint = Callable[[Request], Awaitable[Response]]
_BEARER: Final = "bearer "
_encode = msgspec.json.Encoder().encode


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is only reachable from this machine."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: Config, host: str) -> None:
    """Refuse to serve admin routes without a key on a non-loopback ``host``.

    Raises:
        ConfigurationError: ``host`` is not loopback, no ``admin_key`` is set and ``allow_open_admin`` is false.
    """
    if config.admin_key is None and not config.allow_open_admin and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve /logs, /logs/stats and /sessions on {host} without admin_key: set admin_key "
            "(e.g. admin_key: ${LLM_OBS_ADMIN_KEY}), bind to 127.0.0.1, or set allow_open_admin: true"
        )


def guard(config: Config, endpoint: Endpoint) -> Endpoint:
    """``endpoint``, answering only requests that may see admin data (see the module docstring)."""
    key = config.admin_key.get_secret_value().encode() if config.admin_key is not None else None
    allow_open = config.allow_open_admin

    async def guarded(request: Request) -> Response:
        if key is not None:
            if not hmac.compare_digest(_presented(request), key):
                return _error(401, "this route needs the admin key", "authentication_error", bearer=True)
        elif not allow_open and not _local(request):
            return _error(403, "admin routes answer on loopback only when no admin_key is set", "permission_error")
        return await endpoint(request)

    return guarded


def _presented(request: Request) -> bytes:
    headers = request.headers
    value = headers.get("x-admin-key")
    if value is None:
        authorization = headers.get("authorization", "")
        value = authorization[len(_BEARER) :] if authorization.lower().startswith(_BEARER) else ""
    # latin-1 keeps every header byte as is, so the comparison never raises on odd input.
    return value.strip().encode("latin-1", "replace")


def _local(request: Request) -> bool:
    server = request.scope.get("server")
    if not server or not server[0]:
        return True  # a Unix socket or an in-process transport
    host = str(server[0])
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True  # a name, not a socket address: an in-process test transport
    return is_loopback(host)


def _error(status: int, message: str, kind: str, *, bearer: bool = False) -> Response:
    headers = {"www-authenticate": 'Bearer realm="llm-obs admin"'} if bearer else None
    body = _encode({"error": {"message": message, "type": kind}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)

"""The fake Bedrock's SigV4 check: what AWS answers a request whose signature does not hold.

The access key must be one the fake knows and the signature must match what botocore computes with its
secret (service ``bedrock``, a date within 15 minutes, host and x-amz-date signed), else the error type
and message AWS would answer with (403).
"""

from __future__ import annotations

import calendar
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Scope

__all__ = ["check_signature"]

_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)
_MAX_SKEW_S = 15 * 60


def check_signature(
    scope: Scope, headers: dict[str, str], body: bytes, credentials: Mapping[str, str]
) -> tuple[str, str] | None:
    """``None`` when the request is authenticated, else the (error type, message) AWS would answer."""
    authorization = headers.get("authorization", "")
    if authorization.startswith("Bearer ") and authorization[7:].strip():
        return None  # a Bedrock API key
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    fields = dict(part.strip().partition("=")[::2] for part in authorization[17:].split(","))
    access_key, date, region, service, terminator = (fields.get("Credential", "").split("/") + [""] * 5)[:5]
    secret = credentials.get(access_key)
    if secret is None:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    signed = fields.get("SignedHeaders", "").split(";")
    amz_date = headers.get("x-amz-date", "")
    if service != "bedrock" or terminator != "aws4_request" or not date or amz_date[:8] != date:
        return "InvalidSignatureException", "Credential should be scoped to a valid date, region and service 'bedrock'."
    if "host" not in signed or "x-amz-date" not in signed or not set(signed) <= set(headers):
        return "InvalidSignatureException", "Host, X-Amz-Date and every signed header must be signed and present."
    if "x-amz-security-token" in headers and "x-amz-security-token" not in signed:
        return "InvalidSignatureException", "X-Amz-Security-Token must be signed."
    try:
        skew = abs(time.time() - calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return "InvalidSignatureException", f"Invalid X-Amz-Date {amz_date!r}"
    if skew > _MAX_SKEW_S:
        return "InvalidSignatureException", f"Signature expired: {amz_date} is not within 15 minutes of now"
    expected = _expected_signature(scope, headers, body, signed, (access_key, secret, amz_date, region))
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return "InvalidSignatureException", _BAD_SIGNATURE
    return None


def _expected_signature(
    scope: Scope, headers: dict[str, str], body: bytes, signed: list[str], key: tuple[str, str, str, str]
) -> str:
    """What botocore's SigV4 signer computes for this request as it arrived."""
    from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    access_key, secret, amz_date, region = key
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    url = f"http://{headers['host']}{raw_path.partition(b'?')[0].decode('latin-1')}"
    if scope.get("query_string"):
        url += "?" + scope["query_string"].decode("latin-1")
    # The canonical request holds the header bytes as they arrived: botocore hashes text as UTF-8.
    arrived = {name: _as_signed(headers[name]) for name in signed}
    request = AWSRequest(method=scope["method"], url=url, headers=arrived, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret, headers.get("x-amz-security-token")), "bedrock", region)
    return str(signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request))


def _as_signed(value: str) -> str:
    """A header value (decoded as latin-1) as the text whose UTF-8 bytes are the bytes that arrived."""
    raw = value.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value  # not UTF-8: no text hashes to these bytes, so no signature over them can match

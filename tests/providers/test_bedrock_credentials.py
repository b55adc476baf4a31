"""AWS credentials through botocore's credential chain: a shared-credentials profile and refreshable
credentials, end to end through the gateway to the fake Bedrock (which checks each SigV4 signature).

No network: the chain sees only files in the test's tmp folder (``AWS_SHARED_CREDENTIALS_FILE`` /
``AWS_CONFIG_FILE``) and never the instance metadata endpoint (``AWS_EC2_METADATA_DISABLED``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session  # type: ignore[import-untyped]
import pytest
from botocore.credentials import RefreshableCredentials  # type: ignore[import-untyped]

from llm_obs_middleware.errors import MissingDependencyError
from llm_obs_middleware.providers.bedrock.adapter import BedrockAdapter
from llm_obs_middleware.testing._fake_bedrock import (
    ROTATED_ACCESS_KEY_ID,
    ROTATED_SECRET_ACCESS_KEY,
    TEST_ACCESS_KEY_ID,
    TEST_SECRET_ACCESS_KEY,
)
from tests.providers.test_bedrock_sdk import (
    _AWS_ENV,
    MESSAGES,
    MODEL,
    Kit,
    assert_signed_by_gateway,
    fake,
    isolate_credential_chain,
    make_kit,
    provider,
    upstream_request,
    verify,
)

__all__ = ["fake", "make_kit"]  # the fixtures, imported for pytest


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``AWS_*`` keys in the environment; botocore's chain reads only ``tmp_path``."""
    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    isolate_credential_chain(monkeypatch, tmp_path)
    return tmp_path


def write_profile(folder: Path, name: str, key: str, secret: str, region: str = "us-east-1") -> None:
    with (folder / "aws-credentials").open("a") as file:
        file.write(f"[{name}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
    with (folder / "aws-config").open("a") as file:
        file.write(f"[profile {name}]\nregion = {region}\n")


def test_shared_credentials_profile_signs_requests(
    chain: Path, monkeypatch: pytest.MonkeyPatch, make_kit: Callable[..., Kit]
) -> None:
    write_profile(chain, "default", "AKIADEFAULTPROFILE01", "wrong-secret", "eu-west-1")
    write_profile(chain, "gateway", TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_PROFILE", "gateway")
    # No keys and no region in the provider's config: both come from the profile.
    kit = make_kit(aws_access_key_id=None, aws_secret_access_key=None, aws_region=None)
    assert kit.boto().converse(modelId=MODEL, messages=MESSAGES)["stopReason"] == "end_turn"
    assert_signed_by_gateway(kit.fake)  # the profile's key, for us-east-1 (the profile's region)


def test_explicit_config_keys_win_over_the_profile(chain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_profile(chain, "gateway", "AKIAPROFILE000000001", "profile-secret")
    monkeypatch.setenv("AWS_PROFILE", "gateway")
    request = upstream_request()
    config = provider(aws_access_key_id="AKID", aws_secret_access_key="s3cret", aws_region="eu-central-1")
    BedrockAdapter().sign(request, config)
    verify(request, "AKID", "s3cret", "eu-central-1")


class Rotating:
    """A refreshable credential whose clock the test moves: past its expiry, botocore refreshes it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self.refreshes = 0
        self.credentials = RefreshableCredentials(
            TEST_ACCESS_KEY_ID,
            TEST_SECRET_ACCESS_KEY,
            "first-session-token",
            self.now + timedelta(hours=1),
            self.refresh,
            "test-rotating",
            time_fetcher=lambda: self.now,
        )

    def refresh(self) -> dict[str, Any]:
        self.refreshes += 1
        return {
            "access_key": ROTATED_ACCESS_KEY_ID,
            "secret_key": ROTATED_SECRET_ACCESS_KEY,
            "token": "second-session-token",
            "expiry_time": (self.now + timedelta(hours=1)).isoformat(),
        }


@pytest.fixture
def rotating(chain: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rotating]:
    credential = Rotating()
    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: credential.credentials)
    yield credential


def test_refreshed_credentials_sign_the_next_request(rotating: Rotating, make_kit: Callable[..., Kit]) -> None:
    kit = make_kit(aws_access_key_id=None, aws_secret_access_key=None)  # region from the config
    assert kit.boto().converse(modelId=MODEL, messages=MESSAGES)["stopReason"] == "end_turn"
    headers = assert_signed_by_gateway(kit.fake, TEST_ACCESS_KEY_ID)
    assert headers["x-amz-security-token"] == "first-session-token"
    assert rotating.refreshes == 0

    rotating.now += timedelta(hours=2)  # the first credentials have expired
    events = list(kit.boto().converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    assert "metadata" in events[-1]
    headers = assert_signed_by_gateway(kit.fake, ROTATED_ACCESS_KEY_ID)
    assert headers["x-amz-security-token"] == "second-session-token"
    assert rotating.refreshes == 1


def test_the_chain_finding_nothing_warns_and_forwards_unsigned(chain: Path, caplog: pytest.LogCaptureFixture) -> None:
    request = upstream_request()
    with caplog.at_level("WARNING", logger="llm_obs_middleware.providers.bedrock"):
        BedrockAdapter().sign(request, provider(aws_region="us-east-1"))
    assert "has no credentials" in caplog.text
    assert "authorization" not in request.headers


def test_missing_botocore_for_the_chain_names_the_extra(chain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore.session", None)
    with pytest.raises(MissingDependencyError, match=r"llm-obs-middleware\[bedrock\]"):
        BedrockAdapter().prepare("b", provider(aws_region="us-east-1"))


def test_importing_the_adapter_loads_no_botocore() -> None:
    code = (
        "import sys, llm_obs_middleware.providers.bedrock.adapter, llm_obs_middleware.providers.bedrock.translate;"
        "print(sorted(name for name in sys.modules if name.startswith('botocore')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

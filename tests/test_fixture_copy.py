"""The repo's copy of the provider fixtures matches ../shared/fixtures/providers wherever that folder exists
(CI has it beside the clone), so tests never run on stale payloads."""

from __future__ import annotations

import os

import pytest

from ._fixture_paths import PROVIDER_FIXTURES, SHARED_PROVIDER_FIXTURES


def _files(root: os.PathLike[str]) -> dict[str, bytes]:
    base = os.fspath(root)
    found = {}
    for folder, dirs, names in os.walk(base):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            if not name.endswith(".pyc"):
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    found[os.path.relpath(path, base)] = handle.read()
    return found


def test_the_fixture_copy_matches_the_shared_fixtures() -> None:
    if not SHARED_PROVIDER_FIXTURES.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs with ../shared beside the clone; {SHARED_PROVIDER_FIXTURES} is missing")
        pytest.skip("no ../shared/fixtures beside this clone: the repo's copy is all there is")
    shared, ours = _files(SHARED_PROVIDER_FIXTURES), _files(PROVIDER_FIXTURES)
    assert sorted(ours) == sorted(shared), "files differ: copy ../shared/fixtures/providers to tests/fixtures/providers"
    stale = [name for name in shared if shared[name] != ours[name]]
    assert not stale, f"tests/fixtures/providers is stale for {stale}: copy them from ../shared/fixtures/providers"

"""Where the provider wire fixtures live: a copy of ``../shared/fixtures/providers`` kept in the repo, so the
README's test command runs in a clone on its own (tests/test_fixture_copy.py checks the copy is current)."""

from __future__ import annotations

from pathlib import Path

PROVIDER_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "providers"
SHARED_PROVIDER_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "providers"

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.is_dir():  # CI clones main beside shared/; a work tree may sit one level deeper
    SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures" / "afw"


@pytest.fixture(scope="session")
def afw_fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real afw fixtures are missing: expected them in {FIXTURES}")
    return FIXTURES

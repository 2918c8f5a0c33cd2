"""The browser test's Debian chromium: the same rules as the loopback cluster's packages.

Not root and not CI -> the test is skipped with the reason; root -> tests/cluster/system-deps.sh
installs it; CI=true -> a browser that is still missing FAILS the test.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SYSTEM_DEPS = REPO / "tests" / "cluster" / "system-deps.sh"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def chromium() -> Path:
    if CHROMIUM.is_file():
        return CHROMIUM
    if os.geteuid() == 0:
        r = subprocess.run(["bash", str(SYSTEM_DEPS)], capture_output=True, text=True, check=False)
        if CHROMIUM.is_file():
            return CHROMIUM
        pytest.fail(f"{SYSTEM_DEPS} ran as root (exit {r.returncode}) but {CHROMIUM} is still missing:\n"
                    f"{r.stderr[-2000:]}")
    if _in_ci():
        pytest.fail(f"CI=true: the browser test needs Debian's chromium at {CHROMIUM}; run "
                    f"{SYSTEM_DEPS} as root first (make test does)")
    pytest.skip(f"{CHROMIUM} is missing and this is not root: install Debian's chromium "
                f"(sudo bash {SYSTEM_DEPS}) to run the browser test")

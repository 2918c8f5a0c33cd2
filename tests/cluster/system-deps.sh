#!/usr/bin/env bash
# Install the Debian packages the loopback Slurm test cluster needs (slurm-wlm, munge, slurmdbd,
# mariadb-server, openssh-server, socat for the ssh forwarder into the namespace, iproute2 and
# util-linux for the network namespace), and chromium for the browser test of the Airflow UI
# (tests/ui: Playwright drives Debian's /usr/bin/chromium, no downloaded browser).
#
# Why a script and not a Makefile line: `make test` must work on a fresh CI machine as root and on a
# developer's laptop without root. This script is idempotent: it does nothing when every package is
# already installed, and does nothing (exit 0, with a note) when not running as root, so the cluster
# tests can decide for themselves whether to skip (developer) or fail (CI=true).
set -euo pipefail

PACKAGES=(slurm-wlm slurmdbd munge mariadb-server openssh-server socat iproute2 util-linux chromium)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: not root; missing Debian packages: ${missing[*]} (cluster and browser tests will skip)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: no apt-get; missing packages: ${missing[*]}" >&2
    exit 0
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Never let the packages' own init scripts start system-wide daemons (mariadb, munge, sshd,
# slurmd...) listening on default ports: the test cluster starts its own copies under a temp dir.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

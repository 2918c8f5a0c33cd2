#!/usr/bin/env bash
# Usage: slurmdbd-conf.sh TEMPLATE OUT OWNER
# Write OUT (slurmdbd.conf) from TEMPLATE plus a StoragePass generated now: 0600 and owned by OWNER
# from the moment it exists (umask 077, a temporary name in OUT's directory, then rename), so the
# database password is never in the image, the repository or a world-readable file. The entrypoint
# then sets the same password on the database account by reading it back from OUT (never on a
# command line). A new password at every start: nothing needs to remember it.
set -euo pipefail
template="$1" out="$2" owner="$3"
umask 077
password="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
tmp="$(mktemp "$(dirname "$out")/.slurmdbd.conf.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
grep -v '^StoragePass=' "$template" > "$tmp"
printf 'StoragePass=%s\n' "$password" >> "$tmp"
chown "$owner" "$tmp"
chmod 600 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT

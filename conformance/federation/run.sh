#!/usr/bin/env bash
# Federation suite: Tern federating with Prosody and ejabberd, each on its own loopback
# address with its own domain, certificates from a throwaway test CA, and /etc/hosts entries
# for name resolution. Called by conformance/run.sh (after the Python suite made the venv);
# installs the peers from Debian packages itself, so it needs root (as CI has).
#
# Environment: TERN_BIN (the binary under test), VENV (the Python suite's venv),
# FED_PYTEST_ARGS (extra pytest arguments).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
: "${TERN_BIN:?set TERN_BIN to the tern binary}"
VENV="${VENV:-$ROOT/conformance/python/.venv}"

if [ "$(id -u)" != 0 ]; then
    echo "federation suite: needs root (apt-get install, /etc/hosts); not run" >&2
    exit 1
fi

need=()
command -v prosody >/dev/null 2>&1 || need+=(prosody)
command -v ejabberdctl >/dev/null 2>&1 || need+=(ejabberd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq
    # Package scripts must not start the system services: the suite runs its own instances.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi

# One loopback address per server, so each listens on the standard ports (peers dial 5269).
for entry in "127.0.10.1 tern.test" "127.0.10.2 prosody.test" "127.0.10.3 ejabberd.test"; do
    grep -qxF "$entry" /etc/hosts || echo "$entry" >> /etc/hosts
done

cd "$HERE"
# shellcheck disable=SC2086 # FED_PYTEST_ARGS is a word list on purpose
exec "$VENV/bin/python" -m pytest -v ${FED_PYTEST_ARGS:-}

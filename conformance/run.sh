#!/usr/bin/env bash
# Black-box conformance suites against the built `tern` binary. CI (.ci/run) calls this after
# `cargo test`; it installs everything it needs itself on a clean Debian machine that has the
# Rust and Python toolchains:
#   1. builds the debug binary (`cargo build --bin tern`, the workspace's target dir);
#   2. Python suite: a venv in conformance/python/.venv with pinned slixmpp + pytest, then
#      pytest -v with a per-test timeout;
#   3. Rust suite (tokio-xmpp), if conformance/rust/Cargo.toml exists;
#   4. JS suite (web clients), if conformance/js/package.json exists: Debian's chromium via
#      apt-get when missing, `npm ci` from the pinned package-lock.json, then `node --test`
#      (xmpp.js over WebSocket, strophe.js and Converse.js in headless Chromium over WebSocket
#      and BOSH, against the slixmpp echo bot from the Python venv).
# Exits non-zero if any suite fails. Every suite runs even if an earlier one failed.
#
# Environment: PYTHON (interpreter for the venv, default python3), PYTEST_ARGS (extra pytest
# arguments, e.g. "-k auth -x"), NODE_TEST_ARGS (extra `node --test` arguments, e.g.
# "--test-name-pattern=BOSH"), CHROMIUM_BIN (default /usr/bin/chromium).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

start=$(date +%s)
step() { echo; echo "--- conformance: $* ($(( $(date +%s) - start ))s)"; }
failed=()

# ---------------------------------------------------------------------------------------------
step "build tern (debug)"
cargo build --bin tern
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
export TERN_BIN="$TARGET_DIR/debug/tern"
if [ ! -x "$TERN_BIN" ]; then
    echo "error: cargo build did not produce $TERN_BIN" >&2
    exit 1
fi
echo "TERN_BIN=$TERN_BIN"

# ---------------------------------------------------------------------------------------------
# Python suite (slixmpp): conformance/python
step "python suite: environment"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "error: the Python suite needs Python >= 3.11 (asyncio StreamWriter.start_tls);" \
         "$PY is $("$PY" --version 2>&1)" >&2
    exit 1
fi
VENV="$HERE/python/.venv"
if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "removing a broken venv at $VENV"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv "$VENV"; then
        # Debian's own python3 keeps venv/ensurepip in a separate package.
        rm -rf "$VENV"
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            pyver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${pyver}-venv" \
                || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            "$PY" -m venv "$VENV"
        else
            echo "error: cannot create a venv with $PY (install python3-venv)" >&2
            exit 1
        fi
    fi
fi
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/python/requirements.txt"
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(slixmpp|pytest|pytest-timeout|aiodns) ' || true

step "python suite: pytest"
# shellcheck disable=SC2086 # PYTEST_ARGS is a word list on purpose
if (cd "$HERE/python" && "$VENV/bin/python" -m pytest -v --timeout=120 ${PYTEST_ARGS:-}); then
    echo "python suite: passed"
else
    echo "python suite: FAILED"
    failed+=("python")
fi

# ---------------------------------------------------------------------------------------------
# Rust suite (tokio-xmpp): conformance/rust — maintained separately; runs only once it exists.
if [ -f "$HERE/rust/Cargo.toml" ]; then
    step "rust suite"
    if cargo test --manifest-path "$HERE/rust/Cargo.toml"; then
        echo "rust suite: passed"
    else
        echo "rust suite: FAILED"
        failed+=("rust")
    fi
fi

# ---------------------------------------------------------------------------------------------
# JS suite (web clients): conformance/js
if [ -f "$HERE/js/package.json" ]; then
    step "js suite: environment"
    js_env_ok=true
    CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
    if [ ! -x "$CHROMIUM_BIN" ]; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            { apt-get update -qq \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
                || js_env_ok=false
        else
            echo "error: $CHROMIUM_BIN missing and cannot apt-get install chromium" >&2
            js_env_ok=false
        fi
    fi
    if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
        echo "error: the JS suite needs Node.js >= 20 (@xmpp/client); found $(node --version 2>&1)" >&2
        js_env_ok=false
    fi
    if $js_env_ok && ! (cd "$HERE/js" && npm ci --no-audit --no-fund --loglevel=error); then
        js_env_ok=false
    fi
    if $js_env_ok; then
        echo "chromium: $("$CHROMIUM_BIN" --version 2>/dev/null || echo '?')"
        step "js suite: node --test"
        # shellcheck disable=SC2086 # NODE_TEST_ARGS is a word list on purpose
        if (cd "$HERE/js" && CHROMIUM_BIN="$CHROMIUM_BIN" PYTHON_VENV_BIN="$VENV/bin/python" \
                node --test --test-concurrency=1 --test-timeout=180000 ${NODE_TEST_ARGS:-} test/); then
            echo "js suite: passed (screenshots in conformance/js/artifacts/)"
        else
            echo "js suite: FAILED"
            failed+=("js")
        fi
    else
        echo "js suite: FAILED (environment)"
        failed+=("js")
    fi
fi
# Federation suite: Tern with Prosody and ejabberd (installs them; needs root, as CI has).
if [ -x "$HERE/federation/run.sh" ]; then
    step "federation suite"
    if VENV="$VENV" bash "$HERE/federation/run.sh"; then
        echo "federation suite: passed"
    else
        echo "federation suite: FAILED"
        failed+=("federation")
    fi
fi

# ---------------------------------------------------------------------------------------------
step "done"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "conformance suites failed: ${failed[*]}" >&2
    exit 1
fi
echo "all conformance suites passed"

#!/usr/bin/env bash
# Runs load scenarios against Tern (release build), Prosody and ejabberd in one invocation, one
# server after the other on the same machine, and writes the table of ratios (Tern ÷ peer) into
# docs/benchmarks.md and docs/benchmarks/results.json, with the plots (PNG).
#
# Usage: bench/compare.sh SCENARIO... [-- tern-bench options for every scenario]
#   SCENARIO: idle | login | chat | presence | all (= all four, idle first)
# Environment:
#   SERVERS        servers to run, in order (default "tern prosody ejabberd")
#   MECH           SASL mechanism (default scram-sha-1: the one all three offer with hashed storage)
#   IDLE_SESSIONS  sessions of the idle scenario (default 5000); IDLE_PROCS generator processes (2)
#   PRESENCE_USERS users of the presence scenario, 100 contacts each (default 300)
#   PRESENCE_PREFIX their account prefix (default p; a fresh prefix gives fresh rosters)
#   ROUNDS         repeat the whole server loop, interleaved, and report medians (default 1)
#   NO_BUILD=1     skip `cargo build --release`; NO_REPORT=1 skip the table and plots;
#   DOCS_DIR       where benchmarks.md and benchmarks/ are written (default docs)
#   RUN_DIR        where the logs and results.jsonl go (default bench/results/<UTC time>)
#   TERN_BENCH_DIR servers' configs, data and logs (default /tmp/tern-bench-peers)
# Accounts (u0.., p0..) are created once per server data directory by in-band registration.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
servers=${SERVERS:-tern prosody ejabberd}
mech=${MECH:-scram-sha-1}
idle_n=${IDLE_SESSIONS:-5000}
base=${TERN_BENCH_DIR:-/tmp/tern-bench-peers}
scenarios=()
extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --) shift; extra=("$@"); break ;;
        all) scenarios+=(idle login chat presence) ;;
        idle|login|chat|presence) scenarios+=("$1") ;;
        *) sed -n '2,20p' "$0"; exit 2 ;;
    esac
    shift
done
[ ${#scenarios[@]} -gt 0 ] || { sed -n '2,20p' "$0"; exit 2; }

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -p tern-server -p tern-bench
fi
bin=$CARGO_TARGET_DIR/release/tern-bench
peers=$root/bench/peers/servers.sh
bash "$peers" install
certs=$(bash "$peers" certs)
run=${RUN_DIR:-$root/bench/results/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$run"
jsonl=$run/results.jsonl
users=$(( idle_n > 1000 ? idle_n : 1000 ))
echo "results: $run (load $(cut -d' ' -f1-3 /proc/loadavg))"

for round in $(seq 1 "${ROUNDS:-1}"); do
    for s in $servers; do
        bash "$peers" start "$s"
        pid=$(bash "$peers" pid "$s")
        port=$(bash "$peers" port "$s")
        common=(--addr "127.0.0.1:$port" --domain localhost --ca "$certs/ca.crt"
                --server-pid "$pid" --label "$s" --mech "$mech")
        have=$(cat "$base/$s/accounts" 2>/dev/null || echo 0)
        if [ "$have" -lt "$users" ]; then
            echo "== $s: creating $users + 1000 accounts (once per data directory)"
            "$bin" register "${common[@]}" --users 1000 --prefix p >"$run/$s-register.log" 2>&1
            "$bin" register "${common[@]}" --users "$users" --prefix u >>"$run/$s-register.log" 2>&1
            echo "$users" >"$base/$s/accounts"
        fi
        pp=${PRESENCE_PREFIX:-p}
        pn=${PRESENCE_USERS:-300}
        if [ "$pp" != p ] && [ "$(cat "$base/$s/accounts-$pp" 2>/dev/null || echo 0)" -lt "$pn" ]; then
            "$bin" register "${common[@]}" --users "$pn" --prefix "$pp" >>"$run/$s-register.log" 2>&1
            echo "$pn" >"$base/$s/accounts-$pp"
        fi
        for sc in "${scenarios[@]}"; do
            args=()
            [ "$sc" = idle ] && args=(--sessions "$idle_n" --procs "${IDLE_PROCS:-2}")
            [ "$sc" = presence ] && args=(--users "${PRESENCE_USERS:-300}" --prefix "${PRESENCE_PREFIX:-p}")
            echo "== $s: $sc (round $round, load $(cut -d' ' -f1-3 /proc/loadavg))"
            log=$run/$s-$sc-$round.log
            timeout "${SCENARIO_TIMEOUT:-1800}" "$bin" "$sc" "${common[@]}" "${args[@]}" \
                ${extra[@]+"${extra[@]}"} >"$log" 2>&1 || echo "   $sc on $s failed: see $log"
            grep -v '^{' "$log" | grep -v '^machine:' | sed 's/^/   /' || true
            grep '^{' "$log" | tail -n 1 >>"$jsonl" || true
            sleep 2
        done
        bash "$peers" stop "$s"
    done
done

if [ -z "${NO_REPORT:-}" ]; then
    venv=$root/bench/.venv
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q 'matplotlib>=3.8'
    fi
    "$venv/bin/python" "$root/bench/report.py" "$jsonl" --docs "${DOCS_DIR:-$root/docs}"
fi

#!/usr/bin/env bash
# Runs load scenarios against Tern (release build), Prosody and ejabberd in one invocation, one
# server after the other on the same machine, and writes the table of ratios (Tern ÷ peer) into
# docs/benchmarks.md and docs/benchmarks/results.json, with the plots (PNG).
#
# Usage: bench/compare.sh SCENARIO... [-- tern-bench options for every load scenario]
#   SCENARIO: idle | login | chat | presence | muc | all (= these five, idle first) | archive
#   archive: Tern only (the peers run without a message archive), no server process: durable
#   appends/s (`tern-bench append`), then MAM queries through the store and end to end on an
#   archive of ARCHIVE_ITEMS messages (`query`, `e2e`). Not part of `all`: 20-30 min at 1M.
# Environment:
#   SERVERS        servers to run, in order (default "tern prosody ejabberd")
#   MECH           SASL mechanism (default scram-sha-1: the one all three offer with hashed storage)
#   IDLE_SESSIONS  sessions of the idle scenario (default 5000); IDLE_PROCS generator processes (2)
#   PRESENCE_USERS users of the presence scenario, 100 contacts each (default 300)
#   PRESENCE_PREFIX their account prefix (default p; a fresh prefix gives fresh rosters; on
#                  Prosody the rosters are written into its storage once per prefix and size)
#   MUC_ROOMS, MUC_OCCUPANTS, MUC_SENDERS, MUC_MESSAGES  muc sizes (tern-bench's defaults:
#                  10 rooms, 50 occupants, 5 senders per room, 60 messages each)
#   ARCHIVE_ITEMS  archive size for the query figures (default 1000000); ARCHIVE_DIR where
#                  its databases go (default /tmp: disk here, not tmpfs); ARCHIVE_RUNS timed
#                  runs per query (200); ARCHIVE_APPENDS appends per writer count (50000)
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
archive=
while [ $# -gt 0 ]; do
    case $1 in
        --) shift; extra=("$@"); break ;;
        all) scenarios+=(idle login chat presence muc) ;;
        idle|login|chat|presence|muc) scenarios+=("$1") ;;
        archive) archive=1 ;;
        *) sed -n '2,28p' "$0"; exit 2 ;;
    esac
    shift
done
[ ${#scenarios[@]} -gt 0 ] || [ -n "$archive" ] || { sed -n '2,28p' "$0"; exit 2; }

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

# The archive figures: storage benchmarks in one process (tern-bench append/query/e2e), merged
# into one JSON line for the report.
run_archive() { # ROUND
    local items=${ARCHIVE_ITEMS:-1000000} dir=${ARCHIVE_DIR:-/tmp} r=$1
    # Seeding 1M items takes minutes: the time limit covers it (a scenario stops at it).
    local b=("$bin" --dir "$dir" --max-secs "${ARCHIVE_MAX_SECS:-1800}")
    echo "== tern: archive (round $r, $items items, load $(cut -d' ' -f1-3 /proc/loadavg))"
    local load0; load0=$(cut -d' ' -f1-3 /proc/loadavg)
    local ok=1
    "${b[@]}" --json "$run/archive-append-$r.json" append --writers 1,16,64,256 --sync full \
        --items "${ARCHIVE_APPENDS:-50000}" \
        >"$run/tern-archive-append-$r.log" 2>&1 || ok=
    "${b[@]}" --json "$run/archive-query-$r.json" query --items "$items" --runs "${ARCHIVE_RUNS:-200}" \
        >"$run/tern-archive-query-$r.log" 2>&1 || ok=
    "${b[@]}" --json "$run/archive-e2e-$r.json" e2e --items "$items" --runs "${ARCHIVE_RUNS:-200}" \
        >"$run/tern-archive-e2e-$r.log" 2>&1 || ok=
    [ -n "$ok" ] || echo "   archive failed: see $run/tern-archive-*-$r.log"
    cat "$run"/tern-archive-{append,query,e2e}-"$r".log 2>/dev/null \
        | grep -vE '^machine:|^  seeded [0-9]+/|^results written|^$' | sed 's/^/   /' || true
    python3 - "$run" "$r" "$load0" >>"$jsonl" <<'PY' || true
import json, sys
run, r, load0 = sys.argv[1:]
out = {"scenario": "archive", "server": "tern", "loadavg_start": load0}
for part in ("append", "query", "e2e"):
    try:
        doc = json.load(open(f"{run}/archive-{part}-{r}.json"))
    except OSError:
        continue
    out["machine"] = doc["machine"]
    out[part] = doc["results"] if part == "append" else doc["results"][0]
out["loadavg_end"] = open("/proc/loadavg").read().split(" ", 3)[:3]
out["loadavg_end"] = " ".join(out["loadavg_end"])
print(json.dumps(out))
PY
}

for round in $(seq 1 "${ROUNDS:-1}"); do
    if [ -n "$archive" ] && [[ " $servers " == *" tern "* ]]; then
        run_archive "$round"
    fi
    [ ${#scenarios[@]} -gt 0 ] || continue
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
        # Prosody's rosters for the presence scenario go straight into its storage (see
        # servers.sh prosody-rosters: the protocol path takes it far too long); the scenario
        # itself then runs through the protocol as on the others.
        if [ "$s" = prosody ] && [[ " ${scenarios[*]} " == *" presence "* ]] \
            && [ ! -e "$base/prosody/rosters-$pp-$pn-100" ]; then
            echo "== prosody: writing the rosters of $pn users x 100 contacts ($pp*)"
            bash "$peers" stop prosody
            bash "$peers" prosody-rosters "$pp" "$pn" 100
            touch "$base/prosody/rosters-$pp-$pn-100"
            bash "$peers" start prosody
            pid=$(bash "$peers" pid prosody)
            common=(--addr "127.0.0.1:$port" --domain localhost --ca "$certs/ca.crt"
                    --server-pid "$pid" --label "$s" --mech "$mech")
        fi
        for sc in "${scenarios[@]}"; do
            args=()
            [ "$sc" = idle ] && args=(--sessions "$idle_n" --procs "${IDLE_PROCS:-2}")
            [ "$sc" = presence ] && args=(--users "${PRESENCE_USERS:-300}" --prefix "${PRESENCE_PREFIX:-p}")
            if [ "$sc" = muc ]; then
                [ -n "${MUC_ROOMS:-}" ] && args+=(--rooms "$MUC_ROOMS")
                [ -n "${MUC_OCCUPANTS:-}" ] && args+=(--occupants "$MUC_OCCUPANTS")
                [ -n "${MUC_SENDERS:-}" ] && args+=(--senders "$MUC_SENDERS")
                [ -n "${MUC_MESSAGES:-}" ] && args+=(--messages "$MUC_MESSAGES")
            fi
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

#!/usr/bin/env bash
# Tern, Prosody and ejabberd configured for the same benchmark and run as plain processes
# (never the system services): loopback only, their own data directories and ports, the same
# ECDSA P-256 certificate, nothing that throttles the load generator. See docs/benchmarks.md
# for every setting that differs from the packages' defaults.
#
# Usage: bench/peers/servers.sh start|stop|pid|port|status NAME     (NAME: tern, prosody, ejabberd)
#        bench/peers/servers.sh certs | install
#        bench/peers/servers.sh prosody-rosters PREFIX USERS CONTACTS   (Prosody stopped)
# Environment: TERN_BENCH_DIR (default /tmp/tern-bench-peers) holds configs, data and logs;
#              TERN_BIN (default $CARGO_TARGET_DIR/release/tern, else target/release/tern).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
base=${TERN_BENCH_DIR:-/tmp/tern-bench-peers}
tern_bin=${TERN_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/tern}
domain=localhost
mkdir -p "$base"

port() {
    case $1 in
        tern) echo 15222 ;;
        prosody) echo 25222 ;;
        ejabberd) echo 35222 ;;
        *) echo "unknown server $1" >&2; exit 2 ;;
    esac
}

install() {
    local missing=()
    dpkg -s prosody >/dev/null 2>&1 || missing+=(prosody)
    dpkg -s ejabberd >/dev/null 2>&1 || missing+=(ejabberd)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    # The packages may start their system services; those listen on 5222/5269, not on the
    # benchmark's ports, and are left alone.
}

certs() {
    # openssl rather than `tern cert generate`: that certificate is valid for centuries, and
    # ejabberd's expiry timer crashes on it (Erlang timers stop at ~50 days x 2^32 ms).
    local c=$base/certs
    if [ ! -s "$c/$domain.key" ]; then
        mkdir -p "$c"
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
            -subj "/CN=Tern bench CA" -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=$domain" -keyout "$c/$domain.key" -out "$c/$domain.csr" 2>/dev/null
        printf 'subjectAltName=DNS:%s,DNS:*.%s\nbasicConstraints=CA:FALSE\n' "$domain" "$domain" \
            >"$c/ext.cnf"
        openssl x509 -req -in "$c/$domain.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" \
            -CAcreateserial -days 365 -extfile "$c/ext.cnf" -out "$c/$domain.crt" 2>/dev/null
        chmod 644 "$c/$domain.key"  # prosody and ejabberd run as other users here
    fi
    echo "$c"
}

wait_port() { # NAME PID LOG
    local p; p=$(port "$1")
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 0; fi
        if ! kill -0 "$2" 2>/dev/null; then
            echo "$1 exited; log tail:" >&2; tail -n 30 "$3" >&2 || true; exit 1
        fi
        sleep 0.2
    done
    echo "$1 did not open port $p in 60 s" >&2; tail -n 30 "$3" >&2 || true; exit 1
}

start_tern() {
    local d=$base/tern c; c=$(certs)
    mkdir -p "$d/data"
    cat >"$d/tern.toml" <<TOML
# Written by bench/peers/servers.sh. Changes from the defaults, and why:
[server]
data_dir = "$d/data"
log_level = "warn"                # all three log warnings only
registration = "open"             # accounts are created by in-band registration
registration_per_ip_per_hour = 0  # no limit on registrations per IP

[[host]]
domain = "$domain"
certificate = "$c/$domain.crt"
key = "$c/$domain.key"

[c2s]
listen = ["127.0.0.1:$(port tern)"]
listen_tls = ["127.0.0.1:$(( $(port tern) + 1 ))"]
max_connections = 19000           # 15,000 idle sessions (the process may hold 20,000 files)
max_bytes_per_second = 1000000000 # client byte-rate throttle off

[mam]
default = "never"                 # no message archive: the peers run without one

[proxy65]
enabled = false                   # no SOCKS5 listener (not part of any scenario)

[muc]
message_rate = 0.0                # no per-occupant message throttle (the peers have none)
max_rooms_per_user = 0            # no limit on rooms created by one account

[muc.default_room]
logging = false                   # no room archive: the peers run MUC without MAM
history_length = 0                # no history kept for joiners, as configured on the peers
max_users = 1000                  # as ejabberd's max_users below (Prosody has no limit)
TOML
    # exec: the pid recorded is the server's own (setsid does not fork outside job control).
    (ulimit -n 20000; cd "$d"; exec setsid "$tern_bin" --config "$d/tern.toml" serve \
        </dev/null >"$d/tern.log" 2>&1) &
    echo $! >"$d/pid"
    wait_port tern "$(cat "$d/pid")" "$d/tern.log"
}

start_prosody() {
    local d=$base/prosody c; c=$(certs)
    mkdir -p "$d/data"
    cat >"$d/prosody.cfg.lua" <<LUA
-- Written by bench/peers/servers.sh. Changes from the package defaults, and why:
run_as_root = true                  -- the benchmark runs as root; no system service
pidfile = "$d/prosody.pid"
data_path = "$d/data"
log = { warn = "$d/prosody.log" }   -- all three log warnings only
network_backend = "epoll"           -- thousands of connections
interfaces = { "127.0.0.1" }
c2s_ports = { $(port prosody) }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "carbons"; "ping"; "register";
    "blocklist"; "offline"; "vcard_legacy"; "private"; "pep"; "version"; "time"; "uptime";
}
modules_disabled = { "s2s" }
authentication = "internal_hashed"
default_iteration_count = 4096      -- SCRAM iterations as Tern and ejabberd (default 10000)
storage = "internal"
c2s_require_encryption = true
allow_registration = true
registration_allowlist = { "127.0.0.0/8" } -- no registration throttle for loopback clients
ssl = { certificate = "$c/$domain.crt"; key = "$c/$domain.key"; }
VirtualHost "$domain"
Component "conference.$domain" "muc"
    restrict_room_creation = false  -- any user may create rooms (the default, stated)
    muc_room_default_history_length = 0 -- no history kept for joiners, as on the others
LUA
    (ulimit -n 20000; cd "$d"; exec setsid prosody --config "$d/prosody.cfg.lua" -F \
        </dev/null >"$d/stdout.log" 2>&1) &
    echo $! >"$d/pid"
    wait_port prosody "$(cat "$d/pid")" "$d/stdout.log"
}

ejctl() {
    local d=$base/ejabberd
    # As the ejabberd user directly: `su` (what ejabberdctl uses when started by root) would
    # reset the open-files limit to 1024 through PAM.
    setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd \
        ejabberdctl --config-dir "$d" --config "$d/ejabberd.yml" --ctl-config "$d/ejabberdctl.cfg" \
        --logs "$d/logs" --spool "$d/spool" --node ejbench@localhost "$@"
}

start_ejabberd() {
    local d=$base/ejabberd c; c=$(certs)
    mkdir -p "$d/logs" "$d/spool"
    cat "$c/$domain.crt" "$c/$domain.key" >"$d/$domain.pem"
    cat >"$d/ejabberd.yml" <<YML
# Written by bench/peers/servers.sh. Changes from the package defaults, and why:
hosts:
  - $domain
loglevel: warning               # all three log warnings only
certfiles:
  - $d/$domain.pem
listen:
  - port: $(port ejabberd)
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
    shaper: none                # the packaged config throttles clients (c2s_shaper)
auth_method: internal
auth_password_format: scram     # hashed storage like the others (SCRAM-SHA-1, 4096 iterations)
registration_timeout: infinity  # no wait between registrations from one IP
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
shaper_rules: {}                # no max_user_offline_messages / c2s_shaper rules
modules:
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
  mod_carboncopy: {}
  mod_offline: {}
  mod_privacy: {}
  mod_blocking: {}
  mod_vcard: {}
  mod_private: {}
  mod_pubsub:
    plugins: [pep]
  mod_caps: {}
  mod_version: {}
  mod_time: {}
  mod_register:
    ip_access: all
    access: register
  mod_muc:
    hosts:
      - conference.$domain
    access: all
    access_create: all          # any user may create rooms
    history_size: 0             # no history kept for joiners, as on the others
    max_users: 1000             # default 200
    max_user_conferences: 1000  # default 100
    min_message_interval: 0     # no message throttle (stated; the default)
    min_presence_interval: 0    # no presence throttle (stated; the default)
    default_room_options:
      mam: false                # no room archive, as on the others
      logging: false
YML
    # Empty: the packaged ejabberdctl.cfg points back at /etc/ejabberd/ejabberd.yml.
    : >"$d/ejabberdctl.cfg"
    printf '{lookup,["file","native"]}.\n' >"$d/inetrc"
    chown -R ejabberd:ejabberd "$d"
    # cwd /: `su ejabberd` must be able to enter it.
    (ulimit -n 20000; cd /; exec setsid bash -c "$(declare -f ejctl); base='$base'; ejctl foreground" \
        </dev/null >"$d/stdout.log" 2>&1) &
    echo $! >"$d/pid"
    wait_port ejabberd "$(cat "$d/pid")" "$d/stdout.log"
}

# The presence scenario's rosters written straight into Prosody's storage: through the
# protocol, Prosody 0.12 rewrites a user's whole roster file (pending requests included) on
# every subscription step, ~10 ms each here, so 102 users x 100 contacts (~40,000 saves) take
# it over ten minutes and 300 users far longer. The ring is tern-bench presence's (user i with
# the CONTACTS/2 users on either side) and the file format is what Prosody itself wrote after
# real subscribe/subscribed exchanges (internal storage, data/localhost/roster/USER.dat).
prosody_rosters() { # PREFIX USERS CONTACTS
    local dir=$base/prosody/data/$domain/roster
    mkdir -p "$dir"
    python3 - "$dir" "$domain" "$1" "$2" "$3" <<'PY'
import os, sys
d, domain, prefix, users, contacts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
half = contacts // 2
for i in range(users):
    ring = [(i + k) % users for k in range(1, half + 1)] + [(i + users - k) % users for k in range(1, half + 1)]
    out = ["return {", "\t[false] = {", "\t\t[\"version\"] = 1;", "\t\t[\"pending\"] = {};", "\t};"]
    for j in ring:
        out += [f'\t["{prefix}{j}@{domain}"] = {{', '\t\t["groups"] = {};',
                '\t\t["subscription"] = "both";', "\t};"]
    out.append("};")
    path = os.path.join(d, f"{prefix}{i}.dat")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(out) + "\n")
    os.chmod(path + ".tmp", 0o640)
    os.replace(path + ".tmp", path)
PY
}

# The process doing the work: ejabberd's is the Erlang VM under `su`, found by its node name.
server_pid() {
    case $1 in
        ejabberd) pgrep -f 'beam.smp.*-sname ejbench@localhost' | head -n 1 ;;
        *) cat "$base/$1/pid" ;;
    esac
}

stop() {
    local d=$base/$1
    [ -f "$d/pid" ] || return 0
    local pid; pid=$(cat "$d/pid")
    if [ "$1" = ejabberd ] && kill -0 "$pid" 2>/dev/null; then
        (cd / && ejctl stop >/dev/null 2>&1) || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    # Our own process group (setsid above), then wait for it to end.
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$d/pid"
}

cmd=${1:-}; name=${2:-}
case $cmd in
    install) install ;;
    certs) certs ;;
    port) port "$name" ;;
    start) stop "$name"; "start_$name"; echo "$name up on 127.0.0.1:$(port "$name"), pid $(server_pid "$name")" ;;
    stop) stop "$name" ;;
    pid) server_pid "$name" ;;
    prosody-rosters) prosody_rosters "$2" "$3" "$4" ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
esac

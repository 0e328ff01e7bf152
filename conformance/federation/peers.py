"""The three servers of the federation suite, each a process with a generated configuration,
its own loopback address and standard ports, and certificates from a throwaway test CA:

  tern.test      127.0.10.1   the binary under test (static routes to the peers)
  prosody.test   127.0.10.2   Prosody from Debian's package
  ejabberd.test  127.0.10.3   ejabberd from Debian's package (runs as the `ejabberd` user)

Prosody also serves `rogue.test` with a certificate from a second CA nobody trusts, for the
untrusted-certificate failure test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from tern_server import tern_binary  # noqa: E402

ADDR = {"tern.test": "127.0.10.1", "prosody.test": "127.0.10.2", "ejabberd.test": "127.0.10.3"}
PASSWORD = "Fed-Pa55word"
COMPONENT = ("bot.tern.test", "c0mp0nent-secret")
#: A route to an address where nothing listens.
REFUSED = ("refused.test", "127.0.10.1:5999")


def sh(*args: str, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def make_certs(out: Path) -> Path:
    """A test CA signing one certificate per domain, and a rogue CA for rogue.test."""
    out.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        sh("openssl", "req", "-x509", *ec, "-keyout", str(out / f"{ca}.key"),
           "-out", str(out / f"{ca}.crt"), "-days", "2", "-subj", f"/CN=Tern federation {ca}")
    for domain, ca in [("tern.test", "ca"), ("prosody.test", "ca"), ("ejabberd.test", "ca"),
                       ("rogue.test", "rogue-ca")]:
        sh("openssl", "req", *ec, "-keyout", str(out / f"{domain}.key"),
           "-out", str(out / f"{domain}.csr"), "-subj", f"/CN={domain}")
        (out / f"{domain}.ext").write_text(f"subjectAltName=DNS:{domain},DNS:*.{domain}\n")
        sh("openssl", "x509", "-req", "-in", str(out / f"{domain}.csr"),
           "-CA", str(out / f"{ca}.crt"), "-CAkey", str(out / f"{ca}.key"), "-CAcreateserial",
           "-out", str(out / f"{domain}.crt"), "-days", "2", "-extfile", str(out / f"{domain}.ext"))
    for p in out.iterdir():
        p.chmod(0o644)
    return out


def wait_port(addr: str, port: int, proc: subprocess.Popen, log: Path, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} while starting:\n{tail(log)}")
        try:
            with socket.create_connection((addr, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {addr}:{port} after {timeout}s:\n{tail(log)}")


def tail(path: Path, n: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no {path})"


class Server:
    """Common process handling; subclasses write configs and add accounts."""

    domain = ""
    log: Path

    def __init__(self, base: Path, certs: Path, trusted: bool):
        self.base = base / self.domain
        self.base.mkdir(parents=True, exist_ok=True)
        self.certs = certs
        self.trusted = trusted
        self.addr = ADDR[self.domain]
        self.proc: subprocess.Popen | None = None

    def _spawn(self, args: list[str], **kw) -> None:
        self.out = open(self.base / "stdout.txt", "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True, **kw)
        for port in (5222, 5269):
            wait_port(self.addr, port, self.proc, self.log)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # The whole process group: ejabberd runs under `su` and an Erlang VM.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def log_text(self) -> str:
        try:
            return re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text(errors="replace"))
        except OSError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.domain}: no log line matching {pattern!r} within "
                                     f"{timeout}s; log tail:\n{tail(self.log, 40)}")
            time.sleep(0.1)


class Tern(Server):
    domain = "tern.test"

    def __init__(self, base, certs, trusted):
        super().__init__(base, certs, trusted)
        self.log = self.base / "tern.log"
        self.config = self.base / "tern.toml"
        routes = {d: f"{ADDR[d]}:5269" for d in ("prosody.test", "ejabberd.test")}
        routes["rogue.test"] = f"{ADDR['prosody.test']}:5269"
        routes[REFUSED[0]] = REFUSED[1]
        route_lines = "\n".join(f'"{d}" = "{a}"' for d, a in routes.items())
        ca = f'["{certs / "ca.crt"}"]' if trusted else "[]"
        self.config.write_text(f"""
[server]
data_dir = "{self.base / 'data'}"
log_level = "info"
[[host]]
domain = "tern.test"
certificate = "{certs / 'tern.test.crt'}"
key = "{certs / 'tern.test.key'}"
[c2s]
listen = ["{self.addr}:5222"]
listen_tls = ["{self.addr}:5223"]
[s2s]
listen = ["{self.addr}:5269"]
system_roots = false
ca_files = {ca}
require_verified_certificates = {"true" if trusted else "false"}
connect_timeout_secs = 8
connect_retries = 0
[s2s.routes]
{route_lines}
[[component]]
domain = "{COMPONENT[0]}"
secret = "{COMPONENT[1]}"
[component_listener]
listen = ["{self.addr}:5347"]
""")

    def start(self) -> "Tern":
        for user in ("alice", "bob"):
            sh(str(tern_binary()), "--config", str(self.config), "user", "add",
               f"{user}@tern.test", "--password", PASSWORD, cwd=self.base)
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "TERN_CONFIG")}
        env["NO_COLOR"] = "1"
        self.out = open(self.log, "ab")
        self.proc = subprocess.Popen([str(tern_binary()), "--config", str(self.config), "serve"],
                                     cwd=self.base, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        for port in (5222, 5269, 5347):
            wait_port(self.addr, port, self.proc, self.log)
        return self


class Prosody(Server):
    domain = "prosody.test"

    def __init__(self, base, certs, trusted):
        super().__init__(base, certs, trusted)
        self.log = self.base / "prosody.log"
        self.config = self.base / "prosody.cfg.lua"
        cafile = f'cafile = "{certs / "ca.crt"}";' if trusted else ""
        self.config.write_text(f"""
run_as_root = true
pidfile = "{self.base / 'prosody.pid'}"
data_path = "{self.base / 'data'}"
certificates = "{certs}"
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{self.log}" }} }}
interfaces = {{ "{self.addr}" }}
c2s_ports = {{ 5222 }}
s2s_ports = {{ 5269 }}
c2s_direct_tls_ports = {{}}
s2s_direct_tls_ports = {{}}
http_ports = {{}}
https_ports = {{}}
-- Name resolution from /etc/hosts (the suite's entries), DNS for the rest.
unbound = {{ hoststxt = true }}
modules_enabled = {{ "roster", "saslauth", "tls", "dialback", "disco", "ping" }}
s2s_secure_auth = {"true" if trusted else "false"}
s2s_require_encryption = true
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
ssl = {{ certificate = "{certs / 'prosody.test.crt'}"; key = "{certs / 'prosody.test.key'}"; {cafile} }}
VirtualHost "prosody.test"
VirtualHost "rogue.test"
ssl = {{ certificate = "{certs / 'rogue.test.crt'}"; key = "{certs / 'rogue.test.key'}"; }}
""")
        (self.base / "data").mkdir(exist_ok=True)

    def start(self) -> "Prosody":
        for user in ("alice", "bob"):
            sh("prosodyctl", "--config", str(self.config), "register", user, self.domain, PASSWORD)
        self._spawn(["prosody", "--config", str(self.config), "-F"])
        return self


class Ejabberd(Server):
    domain = "ejabberd.test"

    def __init__(self, base, certs, trusted):
        super().__init__(base, certs, trusted)
        self.log = self.base / "logs" / "ejabberd.log"
        for d in ("logs", "spool"):
            (self.base / d).mkdir(exist_ok=True)
        pem = self.base / "ejabberd.test.pem"
        pem.write_text((certs / "ejabberd.test.crt").read_text()
                       + (certs / "ejabberd.test.key").read_text())
        ca = f"ca_file: {certs / 'ca.crt'}" if trusted else ""
        (self.base / "ejabberd.yml").write_text(f"""
hosts:
  - ejabberd.test
loglevel: info
certfiles:
  - {pem}
{ca}
s2s_use_starttls: required
s2s_dns_timeout: 3
s2s_dns_retries: 1
outgoing_s2s_families: [ipv4]
listen:
  - port: 5222
    ip: "{self.addr}"
    module: ejabberd_c2s
    starttls_required: true
  - port: 5269
    ip: "{self.addr}"
    module: ejabberd_s2s_in
auth_method: internal
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_s2s_dialback: {{}}
  mod_ping: {{}}
""")
        # Empty: the packaged ejabberdctl.cfg would point back at /etc/ejabberd/ejabberd.yml.
        (self.base / "ejabberdctl.cfg").write_text("")
        (self.base / "inetrc").write_text('{lookup,["file","native"]}.\n')
        self.node = "ejfed@localhost"
        sh("chown", "-R", "ejabberd:ejabberd", str(self.base))

    def ctl(self, *args: str) -> list[str]:
        return ["ejabberdctl", "--config-dir", str(self.base),
                "--config", str(self.base / "ejabberd.yml"),
                "--ctl-config", str(self.base / "ejabberdctl.cfg"),
                "--logs", str(self.base / "logs"), "--spool", str(self.base / "spool"),
                "--node", self.node, *args]

    def stop(self) -> None:
        # `su` puts the Erlang VM in a session of its own: ask it to stop over its control
        # channel, then end what is left of our process group.
        if self.proc and self.proc.poll() is None:
            subprocess.run(self.ctl("stop"), cwd="/", capture_output=True, timeout=30)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        super().stop()

    def start(self) -> "Ejabberd":
        # cwd: `su ejabberd` must be able to enter it.
        self._spawn(self.ctl("foreground"), cwd="/")
        for user in ("alice", "bob"):
            sh(*self.ctl("register", user, self.domain, PASSWORD), cwd="/")
        return self

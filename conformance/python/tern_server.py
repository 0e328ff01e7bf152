"""Start, stop and administer a real `tern` binary for the black-box suite.

Everything here talks to the binary only through its command line, its configuration file,
its log and its sockets on 127.0.0.1: the suite never links against the Rust code.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "localhost"

#: Accounts created with `tern user add` in every server the `server` fixture starts.
ACCOUNTS = {
    "alice": "alice-Pa55word",
    "bob": "bob-Pa55word",
    "carol": "carol-Pa55word",
}

#: Time allowed for the server to start accepting connections.
START_TIMEOUT = 30.0
#: Time allowed for SIGTERM to end the server before it is killed.
STOP_TIMEOUT = 10.0
#: Time allowed for one administration command (`tern user add`, `tern cert generate`).
CLI_TIMEOUT = 60.0

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def tern_binary() -> Path:
    """The binary under test: $TERN_BIN, else the workspace's debug build."""
    env = os.environ.get("TERN_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else REPO / "target"
    if not base.is_absolute():
        base = REPO / base
    return base / "debug" / "tern"


def free_port() -> int:
    """A loopback port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env() -> dict:
    env = dict(os.environ)
    # The configured log level must win, and the log must be plain text we can grep.
    env.pop("RUST_LOG", None)
    env.pop("TERN_CONFIG", None)
    env["NO_COLOR"] = "1"
    env.setdefault("RUST_BACKTRACE", "1")
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """Runs one `tern` administration command; raises with its output if it fails."""
    cmd = [str(tern_binary()), *args]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def generate_certs(out: Path) -> Path:
    """`tern cert generate --ca`: a test CA plus a certificate for localhost and *.localhost."""
    out.mkdir(parents=True, exist_ok=True)
    # cwd is `out` so that no stray ./tern.toml is picked up.
    run_cli(["cert", "generate", "--domain", DOMAIN, "--out", str(out), "--ca"], cwd=out)
    for name in ("ca.crt", f"{DOMAIN}.crt", f"{DOMAIN}.key"):
        if not (out / name).is_file():
            raise RuntimeError(f"`tern cert generate --ca` did not write {out / name}")
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (str, Path)):
        s = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


class TernServer:
    """One `tern serve` process with its own directory, config, ports and SQLite database.

    `c2s`, `server` and `http` override keys of the `[c2s]`, `[server]` and `[http]` tables;
    `extra_toml` is appended verbatim (further tables such as `[contact]` or
    `[[external_service]]`).
    """

    def __init__(self, base: Path, certs: Path, *, c2s: dict | None = None,
                 server: dict | None = None, host: dict | None = None,
                 http: dict | None = None, extra_toml: str = ""):
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.certs = certs
        self.ca = certs / "ca.crt"
        self.data_dir = base / "data"
        self.config_path = base / "tern.toml"
        self.log_path = base / "tern.log"
        self.port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        # The HTTP ports (WebSocket, BOSH) are chosen the same way, so that parallel servers
        # never fight over the defaults 5280/5281.
        self.http_port = free_port()
        self.https_port = free_port()
        self.http_opts = http or {}
        self.server_opts = {"log_level": "info", "registration": "closed", **(server or {})}
        self.host_opts = host or {}
        self.extra_toml = extra_toml
        self.c2s_opts = {
            "require_encryption": True,
            "resource_conflict": "kick_old",
            **(c2s or {}),
        }
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._log_mark = 0
        self.starts = 0
        self.write_config()

    # -- configuration -------------------------------------------------------------------

    def write_config(self) -> None:
        server = {"data_dir": str(self.data_dir), **self.server_opts}
        host = {
            "domain": DOMAIN,
            "certificate": str(self.certs / f"{DOMAIN}.crt"),
            "key": str(self.certs / f"{DOMAIN}.key"),
            **self.host_opts,
        }
        c2s = {
            "listen": [f"127.0.0.1:{self.port}"],
            "listen_tls": [f"127.0.0.1:{self.tls_port}"],
            **self.c2s_opts,
        }
        storage = {"backend": "sqlite", "path": "tern.db"}
        http = {
            "listen": [f"127.0.0.1:{self.http_port}"],
            "listen_tls": [f"127.0.0.1:{self.https_port}"],
            **self.http_opts,
        }
        # The SOCKS5 proxy on an ephemeral loopback port, so servers never collide on 7777.
        proxy65 = {"listen": "127.0.0.1:0", "advertised_host": "127.0.0.1"}
        lines = []
        for table, values in (("[server]", server), ("[[host]]", host), ("[c2s]", c2s),
                              ("[storage]", storage), ("[http]", http), ("[proxy65]", proxy65)):
            lines.append(table)
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            lines.append("")
        lines.append(self.extra_toml)
        self.config_path.write_text("\n".join(lines))

    # -- administration ------------------------------------------------------------------

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return run_cli(["--config", str(self.config_path), *args], cwd=self.base)

    def add_user(self, jid: str, password: str) -> None:
        """`tern user add JID --password PW` (works while the server runs: SQLite WAL)."""
        self.cli("user", "add", jid, "--password", password)

    def list_users(self) -> list[str]:
        out = self.cli("user", "list").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    # -- process -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "TernServer":
        assert not self.running, "server already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n===== tern start #{self.starts + 1} =====\n".encode())
        self._log_file.flush()
        self._log_mark = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [str(tern_binary()), "--config", str(self.config_path), "serve"],
            cwd=self.base,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
        )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        pending = {self.port, self.tls_port}
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"tern exited with {self.proc.returncode} while starting\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tern did not listen within {START_TIMEOUT}s\n{self.log_tail()}")
            for port in list(pending):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        pending.discard(port)
                except OSError:
                    pass
            if pending:
                time.sleep(0.05)
        return self

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT. Returns the exit status."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(STOP_TIMEOUT)
                if self._log_file:
                    self._log_file.write(b"\n===== killed after SIGTERM timeout =====\n")
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        self.proc = None
        return code

    def restart(self) -> "TernServer":
        self.stop()
        return self.start()

    # -- log -----------------------------------------------------------------------------

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return _ANSI.sub("", self.log_path.read_text(errors="replace"))

    def log_since_start(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_mark)
            return _ANSI.sub("", f.read().decode(errors="replace"))

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_since_start())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matching {pattern!r} within {timeout}s")
            time.sleep(0.05)

    def rss_kib(self) -> int | None:
        """Resident memory of the server process (Linux /proc), for resource-exhaustion checks."""
        if not self.running:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

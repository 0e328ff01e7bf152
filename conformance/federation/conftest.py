"""Fixtures: the three servers, started once per scenario.

`external`: every server trusts the test CA, Tern and Prosody require verified certificates,
so streams authenticate with SASL EXTERNAL (XEP-0178). `dialback`: nobody trusts it, Tern and
Prosody allow unverified peers, so streams authenticate with dialback (XEP-0220).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from peers import Ejabberd, Prosody, Tern, make_certs


@pytest.fixture(scope="session")
def base():
    # Not under pytest's private tmp dir: the ejabberd user must be able to enter it.
    d = Path(tempfile.mkdtemp(prefix="tern-federation-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def certs(base):
    return make_certs(base / "certs")


@pytest.fixture(scope="module", params=["external", "dialback"])
def servers(request, base, certs):
    trusted = request.param == "external"
    root = base / request.param
    made = []
    try:
        for cls in (Prosody, Ejabberd, Tern):
            s = cls(root, certs, trusted)
            made.append(s)
            s.start()
        yield {s.domain: s for s in made} | {"scenario": request.param}
    finally:
        for s in reversed(made):
            s.stop()
        request.node._fed_servers = made


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "servers" in item.fixturenames:
        servers = item.funcargs.get("servers") or {}
        for name, s in servers.items():
            if name != "scenario":
                rep.sections.append((f"{name} log ({s.log})", "\n".join(
                    s.log_text().splitlines()[-60:])))

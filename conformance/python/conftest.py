"""Fixtures for the black-box conformance suite: certificates, a running `tern` per test,
accounts, and the server log attached to every failing test's report.
"""

from __future__ import annotations

import pytest

from tern_server import ACCOUNTS, TernServer, generate_certs, tern_binary


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "server_opts(c2s=..., server=..., accounts=..., extra_toml=...): options for the `server` fixture"
    )


@pytest.fixture(scope="session")
def tern_bin():
    path = tern_binary()
    if not path.is_file():
        pytest.exit(f"tern binary not found at {path}: run `cargo build --bin tern` "
                    "(or set TERN_BIN)", returncode=3)
    return path


@pytest.fixture(scope="session")
def certs(tern_bin, tmp_path_factory):
    """A test CA and a certificate for localhost / *.localhost, made by the binary itself."""
    return generate_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def ca_file(certs):
    return certs / "ca.crt"


@pytest.fixture
def server_factory(request, certs, tmp_path):
    """`make(c2s={...}, server={...}, accounts={...}, start=True)` -> a TernServer.

    Every server made is stopped at teardown; if the test failed, its log is added to the
    report.
    """
    made: list[TernServer] = []
    request.node._tern_servers = made

    def make(*, c2s=None, server=None, host=None, http=None, accounts=None, extra_toml="",
             start=True) -> TernServer:
        srv = TernServer(tmp_path / f"tern{len(made)}", certs, c2s=c2s, server=server, host=host,
                         http=http, extra_toml=extra_toml)
        made.append(srv)
        for user, pw in (ACCOUNTS if accounts is None else accounts).items():
            srv.add_user(f"{user}@localhost", pw)
        if start:
            srv.start()
        return srv

    yield make
    for srv in made:
        srv.stop()


@pytest.fixture
def server(request, server_factory):
    """A running server with the ACCOUNTS, configured by an optional `server_opts` marker."""
    marker = request.node.get_closest_marker("server_opts")
    kwargs = dict(marker.kwargs) if marker else {}
    return server_factory(**kwargs)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for i, srv in enumerate(getattr(item, "_tern_servers", [])):
            rep.sections.append((f"tern server #{i} log ({srv.log_path})", srv.log_tail(300)))

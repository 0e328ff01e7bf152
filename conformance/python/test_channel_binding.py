"""SCRAM-*-PLUS with tls-exporter (RFC 9266) on TLS 1.3 — what Conversations, Gajim and Dino
use — and the channel-binding rules of RFC 5802 §6 / RFC 6120 §6.4. slixmpp cannot compute
tls-exporter with Python's ssl module, so these tests use pyOpenSSL and a small SCRAM client.
"""

from __future__ import annotations

import pytest

from harness import q, xml_str
from rawxmpp import NS_SASL, mechanisms
from scram_raw import OsslStream, ScramClient
from tern_server import ACCOUNTS

TRANSPORTS = ["starttls", "direct_tls"]


def stream(server, transport: str, tls13: bool = True) -> OsslStream:
    direct = transport == "direct_tls"
    s = OsslStream(server.tls_port if direct else server.port, server.ca, direct_tls=direct,
                   tls13=tls13)
    features = s.open()
    if not direct:
        features = s.starttls()
    s.features = features
    return s


def failure_condition(el) -> str:
    assert el.tag == q(NS_SASL, "failure"), f"expected <failure/>, got {xml_str(el)}"
    conds = [c.tag.split("}", 1)[1] for c in el if not c.tag.endswith("}text")]
    assert len(conds) == 1, xml_str(el)
    return conds[0]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
def test_plus_with_tls_exporter(server, mech, transport):
    s = stream(server, transport)
    try:
        assert s.tls_version == "TLSv1.3"
        assert mech in mechanisms(s.features), xml_str(s.features)
        client = ScramClient(mech, "alice", ACCOUNTS["alice"], "p=tls-exporter", s.exporter())
        answer, verified = s.scram(client)
        assert answer.tag == q(NS_SASL, "success"), xml_str(answer)
        assert verified, f"server signature did not verify: {xml_str(answer)}"
        s.open()
        iq = s.bind("exporter")
        assert iq.get("type") == "result", xml_str(iq)
        server.wait_for_log(rf"SASL success.*jid=alice@localhost.*mechanism=\"?{mech}(\"|\s|$)")
    finally:
        s.close()


def test_wrong_exporter_data_fails(server):
    """Binding data from another TLS connection (a MITM's) must not authenticate."""
    other = stream(server, "direct_tls")
    s = stream(server, "direct_tls")
    try:
        client = ScramClient("SCRAM-SHA-256-PLUS", "alice", ACCOUNTS["alice"], "p=tls-exporter",
                             other.exporter())
        answer, _ = s.scram(client)
        cond = failure_condition(answer)
        assert cond == "not-authorized", xml_str(answer)
    finally:
        s.close()
        other.close()


def test_y_flag_when_plus_was_offered_fails(server):
    """RFC 5802 §6: 'y' says "I support binding but think you don't"; the server offered -PLUS,
    so this is a downgrade and must fail."""
    s = stream(server, "direct_tls")
    try:
        assert "SCRAM-SHA-256-PLUS" in mechanisms(s.features)
        answer, _ = s.scram(ScramClient("SCRAM-SHA-256", "alice", ACCOUNTS["alice"], "y"))
        failure_condition(answer)
    finally:
        s.close()


def test_n_flag_on_non_plus_mechanism_succeeds(server):
    """The plain mechanism with 'n' (client does not support binding) is fine."""
    s = stream(server, "direct_tls")
    try:
        answer, verified = s.scram(ScramClient("SCRAM-SHA-256", "alice", ACCOUNTS["alice"], "n"))
        assert answer.tag == q(NS_SASL, "success") and verified, xml_str(answer)
    finally:
        s.close()


@pytest.mark.parametrize("mech,flag", [
    ("SCRAM-SHA-256-PLUS", "n"),                 # a -PLUS mechanism without binding
    ("SCRAM-SHA-256", "p=tls-exporter"),         # binding with the non-PLUS mechanism
    ("SCRAM-SHA-256-PLUS", "p=tls-unique"),      # a type the server did not offer
])
def test_inconsistent_binding_flags_fail(server, mech, flag):
    s = stream(server, "direct_tls")
    try:
        client = ScramClient(mech, "alice", ACCOUNTS["alice"], flag, s.exporter())
        answer, _ = s.scram(client)
        failure_condition(answer)
    finally:
        s.close()

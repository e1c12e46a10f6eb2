"""A carrier reached over TLS with SRTP: baresip on its own loopback address (127.0.0.2) plays the carrier,
listening for SIP over TLS with a certificate of its own (verified by us against the platform's CA file,
ZVONOK_SIP_TLS_CA_FILE), and answering with mandatory SRTP. Debian's SIPp is built without TLS, hence
baresip. Our phone (plain UDP) calls out through the trunk and the carrier calls our number in over TLS;
the audio is checked by FFT at both ends, and a capture of the loopback interface shows that the carrier
leg's RTP is SRTP (tagged, noise when read as PCMU) while the phone's leg is plain (the capture works).
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zvonok.transport.tls import write_self_signed

from .baresip import Baresip, free_port
from .test_calls_softphone import dominant_frequency
from .test_tls_srtp import capture, media_port, rtp_of, tonality

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

DESK = "8101"
LINE = "8102"  # the extension the registering trunk registers as
DID = "+74957654021"  # unique among the integration modules: on PostgreSQL they share one database
OUT = "+74951234567"


@dataclass
class World:
    server: Any
    seeded: Any
    carrier: Baresip
    certs: Path
    tmp: Path
    trunks: dict[str, int]


def carrier_sent_ports(carrier: Baresip) -> list[int]:
    """The RTP ports in the SDP the carrier sent (from its SIP trace: the bodies with its own address;
    the trace's 'from' cannot tell, as baresip sends from 127.0.0.1 on connections it opens)."""
    text = (carrier.workdir / "baresip.log").read_text(errors="replace")
    blocks = re.split(r"^(?:UDP|TCP|TLS) \S+ -> \S+$", text, flags=re.MULTILINE)
    return [int(m) for body in blocks[1:] if "c=IN IP4 127.0.0.2" in body
            for m in re.findall(r"^m=audio (\d+) ", body, flags=re.MULTILINE)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tlstrunk")
    certs = tmp / "certs"
    write_self_signed(certs / "ours.pem", certs / "ours.key", ["127.0.0.1"])
    write_self_signed(certs / "carrier.pem", certs / "carrier.key", ["127.0.0.2"])
    (certs / "carrier-both.pem").write_text((certs / "carrier.pem").read_text() + (certs / "carrier.key").read_text())
    (certs / "cas.pem").write_text((certs / "carrier.pem").read_text() + (certs / "ours.pem").read_text())
    tls_port = free_port()
    carrier = Baresip(tmp / "carrier", f"<sip:{OUT}@127.0.0.2;transport=tls>;regint=0;mediaenc=srtp-mand;"
                      "answermode=auto", address="127.0.0.2", frequency=440, record=True, trace=True,
                      config=["module srtp.so", f"sip_certificate {certs / 'carrier-both.pem'}",
                              f"sip_cafile {certs / 'ours.pem'}"])
    carrier.start()  # its TLS listener is on its SIP port + 1
    try:
        yield from _served(tmp, certs, carrier, tls_port)
    finally:
        carrier.stop()  # also when the server failed to start


def _served(tmp: Path, certs: Path, carrier: Baresip, tls_port: int) -> Iterator[World]:
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=f"tlstrunk-{secrets.token_hex(3)}.test", numbers=[DESK, LINE],
                          database_url=database_url)
    ids = harness.seed_pstn(data_dir, seeded.tenant_id, {
        "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
        "employees": [{"name": "Desk", "office": "Moscow", "extension": DESK}],
        # baresip opens its TLS connections from 127.0.0.1 whatever address it listens on: the carrier's
        # calls come from there (our desk phone is on 127.0.0.3, so that none of its calls look like the trunk's)
        "trunks": [{"name": "Secure", "host": "127.0.0.2", "port": carrier.sip_port + 1, "transport": "tls",
                    "srtp": "required", "inbound_addresses": ["127.0.0.2", "127.0.0.1"]},
                   # registration over TLS to a real digest registrar: our own server, as extension LINE
                   # (its certificate is in the CA file too; the name checked is the trunk's host)
                   {"name": "Upstream", "host": "127.0.0.1", "port": tls_port, "transport": "tls",
                    "register": True, "register_expires": 60, "username": LINE,
                    "password": harness.password_for(LINE), "from_domain": seeded.domain}],
        "routes": [{"prefix": "7495", "trunk": "Secure"}],
        "numbers": [{"number": DID, "office": "Moscow", "kind": "extension", "destination": {"number": DESK}}],
        "policies": [{"level": "tenant", "caller_id": DID},
                     {"level": "office", "ref": "Moscow", "service_class": "local"}],
    }, database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url, env={
        "ZVONOK_SIP_TLS_PORT": str(tls_port), "ZVONOK_SIP_TLS_CERT": str(certs / "ours.pem"),
        "ZVONOK_SIP_TLS_KEY": str(certs / "ours.key"), "ZVONOK_SIP_TLS_CA_FILE": str(certs / "cas.pem"),
        "ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30",
        "ZVONOK_SIP_DEFAULT_DOMAIN": seeded.domain})  # the trunk's REGISTER names our address, not the domain
    server.start()
    try:
        yield World(server, seeded, carrier, certs, tmp, ids["trunks"])
    finally:
        assert server.stop() == 0, server.log_tail()


def desk_phone(world: World, phones: list[Baresip], name: str, *, auto_answer: bool = False) -> Baresip:
    account = (f"<sip:{DESK}@{world.seeded.domain}>;auth_pass={harness.password_for(DESK)};"
               f'outbound="sip:127.0.0.1:{world.server.sip_port}";regint=600'
               + (";answermode=auto" if auto_answer else ""))
    p = Baresip(world.tmp / name, account, frequency=1000, record=True, address="127.0.0.3",
                trace=True)
    phones.append(p)
    p.start()
    p.wait_event({"REGISTER_OK"})
    return p


def check_audio(world: World, desk: Baresip, cap: Any, calls: int) -> None:
    heard_by_carrier = world.carrier.received_audio()[-1]
    (heard_by_desk,) = desk.received_audio()
    assert abs(dominant_frequency(heard_by_desk) - 440) < 20  # the carrier's tone, decrypted by us
    assert abs(dominant_frequency(heard_by_carrier) - 1000) < 20  # the desk's tone, encrypted towards it
    ports = carrier_sent_ports(world.carrier)
    assert len(ports) >= calls
    secure = rtp_of(cap.of_port(ports[-1]))
    assert len(secure) > 100 and {len(d) for d in secure} == {12 + 160 + 10}  # SRTP: the 80-bit tag
    assert len(tonality(secure)) == 2 and max(tonality(secure)) < 0.1, tonality(secure)
    plain = rtp_of(cap.of_port(media_port(desk)))
    assert len(plain) > 100 and {len(d) for d in plain} == {12 + 160}
    assert len(tonality(plain)) == 2 and min(tonality(plain)) > 0.8, tonality(plain)  # the desk's leg: clear


def test_outbound_call_through_a_tls_trunk(world: World, phones: list[Baresip]) -> None:
    desk = desk_phone(world, phones, "desk-out")
    with capture() as cap:
        desk.command("dial", f"sip:{OUT.lstrip('+')}@{world.seeded.domain}")
        desk.wait_event({"CALL_ESTABLISHED"}, timeout=30)
        world.carrier.wait_event({"CALL_ESTABLISHED"})
        time.sleep(3.0)  # audio flows for a while: the length of the recording
        desk.command("hangup")
        desk.wait_event({"CALL_CLOSED"})
        world.carrier.wait_event({"CALL_CLOSED"})
    desk.stop()
    log = (world.carrier.workdir / "baresip.log").read_text(errors="replace")
    assert re.search(r"^TLS 127\.0\.0\.1:\d+ -> 127\.0\.0\.2:\d+$\s+INVITE sip:\+74951234567@127\.0\.0\.2",
                     log, flags=re.MULTILINE), log[-3000:]
    assert "RTP/SAVP" in log and "a=crypto:" in log
    check_audio(world, desk, cap, 1)
    world.carrier.events.clear()


def test_inbound_call_from_a_tls_trunk(world: World, phones: list[Baresip]) -> None:
    desk = desk_phone(world, phones, "desk-in", auto_answer=True)
    world.carrier.events.clear()
    with capture() as cap:
        tls = int(world.server.env["ZVONOK_SIP_TLS_PORT"])
        world.carrier.command("dial", f"sip:{DID}@127.0.0.1:{tls};transport=tls")
        world.carrier.wait_event({"CALL_ESTABLISHED"}, timeout=30)
        desk.wait_event({"CALL_ESTABLISHED"})
        time.sleep(3.0)
        world.carrier.command("hangup")
        world.carrier.wait_event({"CALL_CLOSED"})
        desk.wait_event({"CALL_CLOSED"})
    desk.stop()
    check_audio(world, desk, cap, 2)


def test_trunk_registers_over_tls(world: World) -> None:
    srv, seeded = world.server, world.seeded
    url = f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}/trunks/{world.trunks['Upstream']}/status"
    deadline = time.monotonic() + 30
    while not (status := harness.http_json(url, seeded.token)).get("registered") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status["registered"] is True, status
    (binding,) = [r for r in srv.registrations(seeded.tenant_id, seeded.token)
                  if r["aor"].removeprefix("sip:").split("@")[0] == LINE]
    assert binding["source"].startswith("tls:127.0.0.1:")  # the REGISTER came over TLS
    tls = int(srv.env["ZVONOK_SIP_TLS_PORT"])
    assert f":{tls};transport=tls" in binding["contact"]  # our TLS port in the Contact, where calls come

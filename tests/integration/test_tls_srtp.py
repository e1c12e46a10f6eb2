"""SIP over TLS and SRTP (SDES) with real softphones: a baresip phone registered over TLS with
``mediaenc=srtp-mand`` calls a plain UDP phone, and the other way round. The audio is checked by FFT at
both ends, and a capture of the loopback interface (a raw AF_PACKET socket, as tcpdump would) shows that
the RTP on the TLS phone's ports is SRTP — longer by the 80-bit tag and no tone when read as PCMU —
while the same capture finds the tone in the clear on the plain phone's leg (the capture works).
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zvonok.media import g711
from zvonok.media.g711 import Codec
from zvonok.transport.tls import write_self_signed

from .baresip import Baresip, free_port
from .test_calls_softphone import calls_server, dominant_frequency

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

NUMBERS = ["801", "802", "803", "804", "805", "806"]


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Path]]:
    certs = tmp_path_factory.mktemp("certs")
    write_self_signed(certs / "cert.pem", certs / "key.pem", ["127.0.0.1"])
    env = {"ZVONOK_SIP_TLS_PORT": str(free_port()), "ZVONOK_SIP_TLS_CERT": str(certs / "cert.pem"),
           "ZVONOK_SIP_TLS_KEY": str(certs / "key.pem"), "ZVONOK_SIP_TLS_RELOAD_INTERVAL": "0.5",
           "ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30"}
    with calls_server(tmp_path_factory, "tls", NUMBERS, env) as (srv, seeded):
        yield srv, seeded, certs


def tls_port(server: tuple[Any, Any, Path]) -> int:
    return int(server[0].env["ZVONOK_SIP_TLS_PORT"])


def phone(phones: list[Baresip], tmp_path: Path, server: tuple[Any, Any, Path], number: str, *, tls: bool,
          frequency: int, auto_answer: bool = False, srtp: bool = True) -> Baresip:
    srv, seeded, certs = server
    if tls:
        account = (f"<sip:{number}@{seeded.domain};transport=tls>;auth_pass={harness.password_for(number)};"
                   f'outbound="sip:127.0.0.1:{tls_port(server)};transport=tls";regint=600;mediaenc=srtp-mand')
        config = [*(["module srtp.so"] if srtp else []), f"sip_cafile {certs / 'cert.pem'}"]
    else:
        account = (f"<sip:{number}@{seeded.domain}>;auth_pass={harness.password_for(number)};"
                   f'outbound="sip:127.0.0.1:{srv.sip_port}";regint=600')
        config = []
    p = Baresip(tmp_path / f"phone{number}", account + (";answermode=auto" if auto_answer else ""),
                frequency=frequency, record=True, config=config, trace=True)
    phones.append(p)
    p.start()
    p.wait_event({"REGISTER_OK"})
    return p


class LoopbackCapture:
    """UDP datagrams on ``lo`` (of RTP size), captured with a raw packet socket (needs root or
    CAP_NET_RAW, as tcpdump does); :meth:`of_port` picks those to or from one port afterwards."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[int, int, bytes]] = []
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            if address[2] == socket.PACKET_OUTGOING:  # each loopback packet is seen leaving and arriving
                continue
            ip = frame[14:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
                continue
            udp = ip[(ip[0] & 0x0F) * 4:]
            source, dest = struct.unpack_from("!HH", udp)
            if len(udp) <= 8 + 12 + 160 + 10:
                self.datagrams.append((source, dest, bytes(udp[8:])))

    def of_port(self, port: int) -> list[bytes]:
        return [d for source, dest, d in self.datagrams if port in (source, dest)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


def rtp_of(datagrams: list[bytes]) -> list[bytes]:
    """The RTP among captured datagrams (version 2, a payload type of PCMU/PCMA), not RTCP or SIP."""
    return [d for d in datagrams if len(d) >= 12 and d[0] >> 6 == 2 and (d[1] & 0x7F) in (0, 8)]


def tonality(packets: list[bytes]) -> list[float]:
    """Per RTP stream (SSRC, in sequence order): how much of the power of its payloads, read as plain PCMU
    (after the 12-byte header), lies within 20 Hz of the phones' tones (440 and 1000 Hz) — near 1 in the
    clear, near 80/4000 for noise (ciphertext)."""
    streams: dict[int, dict[int, bytes]] = {}
    for p in packets:
        seq, ssrc = struct.unpack_from("!H4xI", p, 2)
        streams.setdefault(ssrc, {})[seq] = p[12:12 + 160]
    found = []
    for stream in streams.values():
        if len(stream) < 50:
            continue
        samples = np.concatenate([g711.decode(Codec.PCMU, stream[seq]) for seq in sorted(stream)])
        power = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
        near = (np.abs(freqs - 440) <= 20) | (np.abs(freqs - 1000) <= 20)
        found.append(float(power[near].sum() / power.sum()))
    return found


def media_port(phone: Baresip) -> int:
    """The RTP port the phone put in its own SDP (from its SIP trace: the messages it sent)."""
    text = (phone.workdir / "baresip.log").read_text(errors="replace")
    blocks = re.split(r"^(?:UDP|TCP|TLS) (\S+) -> \S+$", text, flags=re.MULTILINE)
    sources, bodies = blocks[1::2], blocks[2::2]
    own = sources[0]  # its first message is its REGISTER
    ports = [int(m) for src, body in zip(sources, bodies, strict=True) if src == own
             for m in re.findall(r"^m=audio (\d+) ", body, flags=re.MULTILINE)]
    assert ports, text[-3000:]
    return ports[0]


@contextlib.contextmanager
def capture() -> Iterator[LoopbackCapture]:
    cap = LoopbackCapture()
    try:
        yield cap
    finally:
        cap.stop()


def talk(caller: Baresip, callee: Baresip, target: str, seconds: float = 3.0) -> None:
    caller.command("dial", target)
    caller.wait_event({"CALL_ESTABLISHED"})
    callee.wait_event({"CALL_ESTABLISHED"})
    time.sleep(seconds)  # audio flows for a while: the length of the recording, not a wait for a state
    caller.command("hangup")
    caller.wait_event({"CALL_CLOSED"})
    callee.wait_event({"CALL_CLOSED"})
    caller.stop()
    callee.stop()


def check_call(tls_phone: Baresip, plain_phone: Baresip, cap: LoopbackCapture) -> None:
    (heard_by_tls,) = tls_phone.received_audio()
    (heard_by_plain,) = plain_phone.received_audio()
    assert abs(dominant_frequency(heard_by_tls) - 1000) < 20  # the plain phone's tone, decrypted
    assert abs(dominant_frequency(heard_by_plain) - 440) < 20  # the TLS phone's tone, encrypted on its leg
    secure = rtp_of(cap.of_port(media_port(tls_phone)))
    plain = rtp_of(cap.of_port(media_port(plain_phone)))
    assert len(secure) > 100 and len(plain) > 100
    # SRTP: every packet carries the 10-byte auth tag after 160 bytes of (encrypted) 20 ms PCMU
    assert {len(d) for d in secure} == {12 + 160 + 10}
    assert {len(d) for d in plain} == {12 + 160}
    # the plain leg's payloads are the tones in the clear; the SRTP leg's read the same way are noise
    assert len(tonality(plain)) == 2 and min(tonality(plain)) > 0.8, tonality(plain)
    assert len(tonality(secure)) == 2 and max(tonality(secure)) < 0.1, tonality(secure)


def test_tls_srtp_phone_calls_a_plain_phone(tls_server: tuple[Any, Any, Path], phones: list[Baresip],
                                            tmp_path: Path) -> None:
    srv, seeded, _ = tls_server
    a = phone(phones, tmp_path, tls_server, "801", tls=True, frequency=440)
    b = phone(phones, tmp_path, tls_server, "802", tls=False, frequency=1000, auto_answer=True)
    sources = {r["aor"].removeprefix("sip:").split("@")[0]: r["source"]
               for r in srv.registrations(seeded.tenant_id, seeded.token)}
    assert sources["801"].startswith("tls:") and sources["802"].startswith("udp:")
    with capture() as cap:
        talk(a, b, f"sip:802@{seeded.domain}")
    check_call(a, b, cap)


def test_plain_phone_calls_a_tls_srtp_phone(tls_server: tuple[Any, Any, Path], phones: list[Baresip],
                                            tmp_path: Path) -> None:
    """Our offer to a device registered over TLS is RTP/SAVP with our key (the callee side of SRTP)."""
    _, seeded, _ = tls_server
    a = phone(phones, tmp_path, tls_server, "802", tls=False, frequency=1000)
    b = phone(phones, tmp_path, tls_server, "803", tls=True, frequency=440, auto_answer=True)
    with capture() as cap:
        talk(a, b, f"sip:803@{seeded.domain}")
    check_call(b, a, cap)



def test_two_tls_srtp_phones(tls_server: tuple[Any, Any, Path], phones: list[Baresip], tmp_path: Path) -> None:
    """SRTP on both legs: each leg has its own keys (we decrypt and encrypt again in between)."""
    _, seeded, _ = tls_server
    a = phone(phones, tmp_path, tls_server, "801", tls=True, frequency=440)
    b = phone(phones, tmp_path, tls_server, "803", tls=True, frequency=1000, auto_answer=True)
    with capture() as cap:
        talk(a, b, f"sip:803@{seeded.domain}")
    (heard_by_a,) = a.received_audio()
    (heard_by_b,) = b.received_audio()
    assert abs(dominant_frequency(heard_by_a) - 1000) < 20 and abs(dominant_frequency(heard_by_b) - 440) < 20
    for p in (a, b):
        secure = rtp_of(cap.of_port(media_port(p)))
        assert len(secure) > 100 and {len(d) for d in secure} == {12 + 160 + 10}
        assert len(tonality(secure)) == 2 and max(tonality(secure)) < 0.1, tonality(secure)


def set_policy(server: tuple[Any, Any, Path], number: str, policy: str | None) -> None:
    srv, seeded, _ = server
    api = f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}/extensions"
    (ext,) = [e for e in harness.http_json(f"{api}?limit=100", seeded.token)["items"] if e["number"] == number]
    changed = harness.http_json(f"{api}/{ext['id']}", seeded.token, method="PATCH", body={"srtp": policy})
    assert changed["srtp"] == policy


def test_required_srtp_refuses_plain_media(tls_server: tuple[Any, Any, Path], phones: list[Baresip],
                                          tmp_path: Path) -> None:
    """An extension whose policy is "required": its plain offer over TLS gets 488, a call from it over UDP
    gets 488, and its device registered over UDP is not rung (480)."""
    _, seeded, _ = tls_server
    set_policy(tls_server, "804", "required")
    set_policy(tls_server, "805", "required")
    plain_tls = phone(phones, tmp_path, tls_server, "804", tls=True, frequency=440, srtp=False)
    udp = phone(phones, tmp_path, tls_server, "805", tls=False, frequency=440, auto_answer=True)
    other = phone(phones, tmp_path, tls_server, "802", tls=False, frequency=1000, auto_answer=True)
    for caller in (plain_tls, udp):
        caller.command("dial", f"sip:802@{seeded.domain}")
        closed = caller.wait_event({"CALL_CLOSED"})
        assert "488" in closed.get("param", ""), closed
    other.command("dial", f"sip:805@{seeded.domain}")
    closed = other.wait_event({"CALL_CLOSED"})
    assert "480" in closed.get("param", ""), closed
    assert not [e for e in udp.events if e.get("type") == "CALL_INCOMING"]
    # back to the default: the same plain offer over TLS is answered (optional: SRTP only when offered)
    set_policy(tls_server, "804", None)
    plain_tls.command("dial", f"sip:802@{seeded.domain}")
    plain_tls.wait_event({"CALL_ESTABLISHED"})
    plain_tls.command("hangup")
    plain_tls.wait_event({"CALL_CLOSED"})


def test_sips_phone(tls_server: tuple[Any, Any, Path], phones: list[Baresip], tmp_path: Path) -> None:
    """A phone set up with a sips: address (RFC 5630; pjsua2: baresip 1.0 refuses sips: accounts): it
    registers a sips: contact over TLS, is called there with a sips: Request-URI and our sips: Contact,
    with SRTP, and hears the caller (a plain UDP phone)."""
    from .pjsua_fixtures import write_tone
    from .pjsua_phone import PjsuaPhone

    srv, seeded, certs = tls_server
    workdir = tmp_path / "pjsua-806"
    workdir.mkdir()
    secure = PjsuaPhone(workdir, name="sips", play=write_tone(workdir / "tone440.wav", 440), record=True,
                        tls_ca=certs / "cert.pem")
    try:
        secure.start()
        secure.register("806", harness.password_for("806"), seeded.domain, proxy=f"127.0.0.1:{tls_port(tls_server)}",
                        auto_answer=True, sips=True)
        (binding,) = [r for r in srv.registrations(seeded.tenant_id, seeded.token) if "806@" in r["aor"]]
        assert binding["contact"].startswith("sips:") and binding["source"].startswith("tls:"), binding
        caller = phone(phones, tmp_path, tls_server, "802", tls=False, frequency=1000)
        caller.command("dial", f"sip:806@{seeded.domain}")
        incoming = secure.wait_incoming()
        secure.wait_state(incoming, "CONFIRMED")
        caller.wait_event({"CALL_ESTABLISHED"})
        time.sleep(3.0)
        caller.command("hangup")
        caller.wait_event({"CALL_CLOSED"})
        secure.wait_ended(incoming)
        (invite,) = [m for m in secure.sip_messages() if m.direction == "RX" and m.method == "INVITE"]
        assert invite.start_line.startswith("INVITE sips:806@"), invite.start_line
        assert (invite.header("contact") or "").startswith("<sips:zvonok@127.0.0.1:"), invite.header("contact")
        assert "RTP/SAVP" in invite.text and "a=crypto:" in invite.text  # SDES keys: TLS all the way
        assert abs(dominant_frequency(secure.recording(incoming)) - 1000) < 20
    finally:
        secure.stop()


def test_a_renewed_certificate_is_served_without_a_restart(tls_server: tuple[Any, Any, Path]) -> None:
    _, _, certs = tls_server

    def presented() -> bytes:
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        with (socket.create_connection(("127.0.0.1", tls_port(tls_server)), timeout=5) as raw,
              client.wrap_socket(raw) as conn):
            return bytes(conn.getpeercert(binary_form=True) or b"")

    before = presented()
    assert before == ssl.PEM_cert_to_DER_cert((certs / "cert.pem").read_text())
    write_self_signed(certs / "cert.pem", certs / "key.pem", ["127.0.0.1", "renewed.example"])
    renewed = ssl.PEM_cert_to_DER_cert((certs / "cert.pem").read_text())
    deadline = time.monotonic() + 15
    while presented() != renewed:  # checked every 0.5 s by the server (ZVONOK_SIP_TLS_RELOAD_INTERVAL)
        assert time.monotonic() < deadline, "the renewed certificate was not picked up"
        time.sleep(0.1)

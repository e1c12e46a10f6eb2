"""A carrier-side fax machine for the integration tests: a minimal SIP UA (UDP, one INVITE dialog, PCMA)
that calls a DID of the server and sends a TIFF with our own spandsp terminal over RTP.

Deliberately small and blocking (one thread, ``select`` with absolute 20 ms deadlines): it only has to
place one call, answer the server's BYE and pace the fax audio. It shares nothing with the server's SIP
stack but the spandsp terminal (:class:`zvonok.fax.endpoint.FaxEndpoint`), which the unit tests cover.
"""

from __future__ import annotations

import re
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from zvonok.fax.endpoint import FaxEndpoint, FaxResult
from zvonok.media.g711 import Codec
from zvonok.media.rtp import rtp_payload_bounds

RTP = struct.Struct("!BBHII")


@dataclass
class SentFax:
    result: FaxResult | None
    status: int  # the INVITE's final response
    bye_from_server: bool
    seconds: float


def _header(message: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(.*?)\r$", message, re.IGNORECASE | re.MULTILINE)
    return match.group(1) if match else ""


def send_fax(
    *,
    server: tuple[str, int],
    local_host: str,
    sip_port: int,
    did: str,
    caller: str,
    tiff: Path,
    timeout: float = 240.0,
) -> SentFax:
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind((local_host, sip_port))
    rtp.bind((local_host, 0))
    rtp_port = rtp.getsockname()[1]
    call_id = secrets.token_hex(8)
    tag = secrets.token_hex(4)
    ruri = f"sip:{did}@{server[0]}:{server[1]}"
    sdp = (
        f"v=0\r\no=fax 1 1 IN IP4 {local_host}\r\ns=-\r\nc=IN IP4 {local_host}\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )

    def request(method: str, cseq: int, to: str, uri: str, body: str = "") -> bytes:
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {local_host}:{sip_port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{caller}@{local_host}>;tag={tag}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{caller}@{local_host}:{sip_port}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    endpoint = FaxEndpoint(calling=True, codec=Codec.PCMA, tx_tiff=tiff, ident=caller[-20:])
    started = time.monotonic()
    invite = request("INVITE", 1, f"<sip:{did}@{server[0]}>", ruri, sdp)
    sip.sendto(invite, server)
    resent = time.monotonic()
    to_header = ""
    remote_uri = ruri
    media: tuple[str, int] | None = None
    status = 0
    bye_from_server = False
    ssrc, seq, ts = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
    deadline = time.monotonic() + 0.020
    hangup_at: float | None = None
    try:
        while time.monotonic() - started < timeout:
            wait = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([sip, rtp], [], [], wait)
            if sip in readable:
                data, addr = sip.recvfrom(65535)
                text = data.decode("utf-8", "replace")
                if text.startswith("SIP/2.0 "):
                    code = int(text[8:11])
                    if "INVITE" in _header(text, "CSeq") and code >= 200:
                        status = code
                        to_header = _header(text, "To")
                        contact = re.search(r"<([^>]+)>", _header(text, "Contact"))
                        remote_uri = contact.group(1) if contact else ruri
                        sip.sendto(request("ACK", 1, to_header, remote_uri), server)
                        if code >= 300:
                            return SentFax(
                                result=None,
                                status=code,
                                bye_from_server=False,
                                seconds=time.monotonic() - started,
                            )
                        body = text.split("\r\n\r\n", 1)[1]
                        host = re.search(r"^c=IN IP4 (\S+)", body, re.MULTILINE)
                        port = re.search(r"^m=audio (\d+)", body, re.MULTILINE)
                        assert host and port, body
                        media = (host.group(1), int(port.group(1)))
                elif text.startswith("BYE "):
                    bye_from_server = True
                    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
                    keep = [
                        h
                        for h in head[1:]
                        if h.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")
                    ]
                    sip.sendto(
                        ("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode(),
                        addr,
                    )
                    # the server hangs up at its phase E, right after our DCN: our terminal finishes
                    # sending that DCN into the dead line (a second at most) and reaches phase E too
                    silence = endpoint.transmit()
                    for _ in range(100):
                        if endpoint.done:
                            break
                        endpoint.transmit()
                        endpoint.receive(bytes([0xD5]) * len(silence))
                    break
            if rtp in readable:
                data = rtp.recv(2048)
                if len(data) >= 12 and data[1] & 0x7F == 8:
                    start, end = rtp_payload_bounds(data)
                    endpoint.receive(data[start:end])
            now = time.monotonic()
            if status == 0 and now - resent > 0.5:  # Timer A, roughly: loopback loses nothing, but be sure
                sip.sendto(invite, server)
                resent = now
            if now >= deadline:
                deadline += 0.020
                if media is not None:
                    payload = endpoint.transmit()
                    rtp.sendto(RTP.pack(0x80, 8, seq, ts, ssrc) + payload, media)
                    seq = (seq + 1) & 0xFFFF
                    ts = (ts + len(payload)) & 0xFFFFFFFF
            if endpoint.done and hangup_at is None:
                hangup_at = now + 5.0  # the server hangs up after phase E; if it does not, we do
            if hangup_at is not None and now > hangup_at:
                sip.sendto(request("BYE", 2, to_header, remote_uri), server)
                break
        return SentFax(
            result=endpoint.result,
            status=status,
            bye_from_server=bye_from_server,
            seconds=time.monotonic() - started,
        )
    finally:
        endpoint.close()
        sip.close()
        rtp.close()

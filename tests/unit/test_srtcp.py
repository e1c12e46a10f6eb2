"""SRTCP (RFC 3711 §3.4) on SRTP legs.

libsrtp's SRTCP is cross-checked against an independent reference written here from the RFC (AES-CM key
derivation §4.3, AES-CM encryption §4.1.1 with the SRTCP IV, the E flag and 31-bit index word, HMAC-SHA1
over the packet and that word, §3.4), itself anchored to the RFC's key-derivation test vectors (Appendix
B.3). Then the media engine: RTCP reaching an SRTP leg counts only when it authenticates, and what the
leg sends on its RTCP socket goes out as SRTCP.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pylibsrtp import Error as SrtpError
from test_media_engine import HOST, RawPeer, make_engine, wait_until

from zvonok.media.g711 import Codec
from zvonok.media.interface import SrtpKeys
from zvonok.media.rtp import ReceiverReport, ReportBlock, SenderReport, parse_rtcp
from zvonok.media.srtp import SrtcpSender, rx_session, tx_session


# -- a reference from the RFC text (no code of any implementation) ---------------------------------------
def aes_cm(key: bytes, iv: int, length: int) -> bytes:
    """AES in counter mode (§4.1.1): the keystream for a 128-bit IV (the low 16 bits the block counter)."""
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv.to_bytes(16, "big"))).encryptor()
    return encryptor.update(b"\x00" * length) + encryptor.finalize()


def derive(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """§4.3.1 with key_derivation_rate 0: x = (label << 48) XOR master_salt, keystream from IV x * 2^16."""
    x = (label << 48) ^ int.from_bytes(master_salt, "big")
    return aes_cm(master_key, x << 16, length)


def srtcp_protect(master: bytes, rtcp: bytes, index: int) -> bytes:
    """SRTCP of ``rtcp`` at ``index`` (E=1), AES_CM_128_HMAC_SHA1_80: labels 3, 4, 5 (§4.3.2)."""
    key, salt = master[:16], master[16:]
    k_e, k_a, k_s = derive(key, salt, 3, 16), derive(key, salt, 4, 20), derive(key, salt, 5, 14)
    ssrc = int.from_bytes(rtcp[4:8], "big")
    iv = (int.from_bytes(k_s, "big") << 16) ^ (ssrc << 64) ^ (index << 16)
    body = rtcp[8:]
    encrypted = rtcp[:8] + bytes(a ^ b for a, b in zip(body, aes_cm(k_e, iv, len(body)), strict=True))
    authenticated = encrypted + struct.pack("!I", 0x80000000 | index)
    return authenticated + hmac.new(k_a, authenticated, hashlib.sha1).digest()[:10]


def test_reference_key_derivation_matches_rfc3711_b3() -> None:
    key = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139")
    salt = bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")
    assert derive(key, salt, 0, 16).hex().upper() == "C61E7A93744F39EE10734AFE3FF7A087"
    assert derive(key, salt, 2, 14).hex().upper() == "30CBBC08863D8C85D49DB34A9AE1"
    assert derive(key, salt, 1, 20).hex().upper() == "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"


RR = ReceiverReport(ssrc=0x5EC, reports=(ReportBlock(ssrc=0x9A1, fraction_lost=3, cumulative_lost=7,
                                                     highest_seq=0x10042, jitter=12),)).serialize()
SR = SenderReport(ssrc=0x5EC, ntp_timestamp=0xE8F1_2345_6789_ABCD, rtp_timestamp=160_000, packet_count=50,
                  octet_count=8000).serialize()


def test_libsrtp_srtcp_matches_the_rfc_reference() -> None:
    master = bytes(range(30))
    protect = tx_session(master).protect_rtcp
    for packet in (RR, SR, RR + SR):
        out = protect(packet)
        e_index = struct.unpack_from("!I", out, len(out) - 14)[0]
        assert e_index >> 31 == 1  # E flag: encrypted
        assert out == srtcp_protect(master, packet, e_index & 0x7FFFFFFF)
        assert out[:8] == packet[:8] and out[8:len(packet)] != packet[8:]  # header and SSRC stay readable
    # and libsrtp takes the reference's packets: the same protocol both ways
    unprotect = rx_session(master).unprotect_rtcp
    assert unprotect(srtcp_protect(master, RR, 1000)) == RR
    with pytest.raises(SrtpError):  # a replay of that index
        unprotect(srtcp_protect(master, RR, 1000))
    tampered = bytearray(srtcp_protect(master, SR, 1001))
    tampered[12] ^= 1
    with pytest.raises(SrtpError):
        unprotect(bytes(tampered))
    with pytest.raises(SrtpError):  # plain RTCP has no tag: never taken on an SRTP leg
        unprotect(RR)


async def test_srtp_leg_takes_only_authentic_srtcp_and_sends_srtcp() -> None:
    engine = make_engine()
    ours, theirs = os.urandom(30), os.urandom(30)
    secure = await engine.create_endpoint(1, "c", [Codec.PCMU])
    phone_rtcp = await RawPeer.open()
    try:
        await engine.set_remote(secure, HOST, phone_rtcp.port - 1, payload_type=0, codec=Codec.PCMU,
                                srtp=SrtpKeys(local=ours, remote=theirs))
        leg = engine._legs[secure.id]
        rtcp_addr = (secure.local_address.host, secure.local_address.port + 1)
        loop = asyncio.get_running_loop()
        sock, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(HOST, 0))
        try:
            sock.sendto(RR, rtcp_addr)  # plain: dropped
            sock.sendto(tx_session(os.urandom(30)).protect_rtcp(RR), rtcp_addr)  # forged: dropped
            sock.sendto(srtcp_protect(theirs, SR, 5), rtcp_addr)  # the phone's, keyed as it said: counted
            await wait_until(lambda: leg.stats.rtcp_reports >= 1)
            await asyncio.sleep(0.1)
            assert leg.stats.rtcp_reports == 1
            assert leg.srtp is not None and leg.srtp[2].get_protocol().failed == 2  # counted as refused
        finally:
            sock.close()
        # anything sent on the leg's RTCP transport is SRTCP under our key
        assert isinstance(leg.rtcp_transport, SrtcpSender)
        leg.rtcp_transport.sendto(RR, (HOST, phone_rtcp.port))
        await wait_until(lambda: len(phone_rtcp.raw) == 1)
        assert phone_rtcp.raw[0] != RR and len(phone_rtcp.raw[0]) == len(RR) + 14
        assert parse_rtcp(rx_session(ours).unprotect_rtcp(phone_rtcp.raw[0]))[0] == parse_rtcp(RR)[0]
        # plain RTP again (a re-INVITE without crypto): RTCP is plain again too
        await engine.set_remote(secure, HOST, phone_rtcp.port - 1, payload_type=0, codec=Codec.PCMU)
        assert not isinstance(leg.rtcp_transport, SrtcpSender)
        sock, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(HOST, 0))
        try:
            sock.sendto(RR, rtcp_addr)
            await wait_until(lambda: leg.stats.rtcp_reports >= 2)
        finally:
            sock.close()
    finally:
        phone_rtcp.close()
        await engine.close()

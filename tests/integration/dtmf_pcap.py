"""Write a pcap of RFC 4733 key presses for SIPp's ``play_pcap_audio``.

SIPp's own ``dtmf_2833_<digit>.pcap`` files each carry one fixed RTP timestamp, so the same digit twice
(or digits whose recorded timestamps go backwards) reads as one event to any RFC 4733 receiver. This
writes one capture of a whole key sequence with increasing timestamps and sequence numbers, the packets
20 ms apart and 200 ms between presses, from our own telephone-event encoder.
"""

from __future__ import annotations

import struct
from pathlib import Path

from zvonok.media.dtmf import event_payloads

PT = 101
PRESS_GAP = 0.2  # seconds from one key's start to the next


def _udp_frame(payload: bytes) -> bytes:
    # Ethernet (IPv4) + IPv4 + UDP headers: SIPp rewrites addresses and ports, checksums are not checked
    eth = b"\x00" * 12 + b"\x08\x00"
    udp = struct.pack(">HHHH", 6000, 6000, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 17, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    return eth + ip + udp


def write_dtmf_pcap(path: Path, keys: str, *, start: float = 0.5) -> Path:
    """``keys`` (0-9, *, #) as RFC 4733 events (payload type 101), the first ``start`` seconds in."""
    records = []
    seq = 1000
    for index, key in enumerate(keys):
        at = start + index * PRESS_GAP
        timestamp = 8000 + int(at * 8000)
        for n, (marker, payload) in enumerate(event_payloads(key, duration_ms=100)):
            rtp = struct.pack(">BBHII", 0x80, (0x80 if marker else 0) | PT, seq & 0xFFFF, timestamp, 0x5EED) + payload
            seq += 1
            t = at + n * 0.02
            frame = _udp_frame(rtp)
            records.append(struct.pack("<IIII", int(t), int((t % 1) * 1_000_000), len(frame), len(frame)) + frame)
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + b"".join(records))
    return path


def write_inband_pcap(path: Path, keys: str, *, start: float = 0.5, tone: float = 0.1, gap: float = 0.3) -> Path:
    """``keys`` as DTMF tones in the audio itself: one PCMA stream (payload type 8) of 20 ms packets, silence
    for ``start`` seconds and between the ``tone``-long key presses, as an old gateway sends them."""
    import numpy as np

    from zvonok.media.dtmf_inband import COLS, KEYPAD, ROWS
    from zvonok.media.g711 import Codec, encode

    parts = [np.zeros(int(start * 8000))]
    t = np.arange(int(tone * 8000)) / 8000
    for key in keys:
        r = next(i for i, row in enumerate(KEYPAD) if key in row)
        c = KEYPAD[r].index(key)
        parts += [6000 * (np.sin(2 * np.pi * ROWS[r] * t) + np.sin(2 * np.pi * COLS[c] * t)), np.zeros(int(gap * 8000))]
    samples = np.concatenate(parts + [np.zeros(8000)]).astype(np.int16)
    records = []
    for n, i in enumerate(range(0, len(samples) - 159, 160)):
        payload = encode(Codec.PCMA, samples[i:i + 160])
        rtp = struct.pack(">BBHII", 0x80, 8 | (0x80 if n == 0 else 0), (2000 + n) & 0xFFFF, 16000 + n * 160,
                          0xA11D) + payload
        at = n * 0.02
        frame = _udp_frame(rtp)
        records.append(struct.pack("<IIII", int(at), int((at % 1) * 1_000_000), len(frame), len(frame)) + frame)
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + b"".join(records))
    return path

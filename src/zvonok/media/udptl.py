"""UDPTL, the transport of T.38 fax over UDP (ITU-T T.38 §9.1 and Annex D's ASN.1), sans-I/O.

How it works: every datagram is one ``UDPTLPacket`` in ASN.1 PER (aligned, as T.38 §9.1 requires)::

    UDPTLPacket ::= SEQUENCE {
        seq-number          INTEGER (0..65535),                   -- two octets, big-endian
        primary-ifp-packet  TYPE-IDENTIFIER.&Type(IFPPacket),     -- open type: length + octets
        error-recovery      CHOICE {                              -- one bit, padded to the octet
            secondary-ifp-packets SEQUENCE OF TYPE-IDENTIFIER.&Type(IFPPacket),  -- count + open types
            fec-info              SEQUENCE { fec-npackets INTEGER, fec-data SEQUENCE OF OCTET STRING }
        }
    }

The IFP packets themselves (T.30 indicators and HDLC/image data) are opaque here: spandsp's T.38 core
builds and reads them. Error recovery by redundancy (T.38 §9.1, ``t38UDPRedundancy``): each datagram
repeats the last few IFPs it sent, most recent first, so a lost datagram is rebuilt from the next one.
:class:`UdptlSender` numbers the packets and adds the redundancy that fits ``max_datagram``;
:class:`UdptlReceiver` turns datagrams back into IFPs in sequence order, each once, recovering lost
ones from the secondaries. Datagrams using FEC (``t38UDPFEC``) are accepted for their primary only: we
never offer FEC, so a peer should not send it. Anything malformed raises :class:`UdptlError` from
:func:`decode` and is dropped (counted) by the receiver: a datagram from the network never raises.

PER length determinants (X.691 §10.9): one octet below 128, two octets (``10`` + 14 bits) below 16384;
the fragmented form (``11``) is refused (no IFP or redundancy count comes near 16 K).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SEQ_MODULO = 65536
_SEQ = struct.Struct("!H")
_REDUNDANCY = 0x00  # error-recovery CHOICE index 0 in the leading bit
_FEC = 0x80
MAX_SECONDARIES = 16  # a peer's redundancy depth beyond this is abuse, not error recovery


class UdptlError(ValueError):
    """A datagram that is not a well-formed UDPTL packet."""


@dataclass(frozen=True, slots=True)
class UdptlPacket:
    seq: int
    primary: bytes
    secondaries: tuple[bytes, ...] = ()  # secondaries[0] is IFP seq-1, [1] is seq-2 …
    fec: bool = False  # the packet carried fec-info (its FEC data is not used)


def _put_length(out: bytearray, length: int) -> None:
    if length < 0x80:
        out.append(length)
    elif length < 0x4000:
        out += bytes((0x80 | (length >> 8), length & 0xFF))
    else:
        raise ValueError(f"UDPTL length {length} needs PER fragmentation")


def _get_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise UdptlError("truncated length determinant")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    if first < 0xC0:
        if pos + 1 >= len(data):
            raise UdptlError("truncated length determinant")
        return ((first & 0x3F) << 8) | data[pos + 1], pos + 2
    raise UdptlError("fragmented PER length")


def _get_open(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _get_length(data, pos)
    end = pos + length
    if end > len(data):
        raise UdptlError("open type runs past the datagram")
    return data[pos:end], end


def encode(packet: UdptlPacket) -> bytes:
    """One datagram for ``packet`` (redundancy error recovery; ``fec`` is never produced)."""
    if not 0 <= packet.seq < SEQ_MODULO:
        raise ValueError(f"UDPTL sequence number {packet.seq}")
    out = bytearray(_SEQ.pack(packet.seq))
    _put_length(out, len(packet.primary))
    out += packet.primary
    out.append(_REDUNDANCY)
    _put_length(out, len(packet.secondaries))
    for ifp in packet.secondaries:
        _put_length(out, len(ifp))
        out += ifp
    return bytes(out)


def decode(data: bytes) -> UdptlPacket:
    """Parse one datagram; :class:`UdptlError` when it is not a UDPTL packet."""
    if len(data) < 3:
        raise UdptlError("datagram too short")
    (seq,) = _SEQ.unpack_from(data)
    primary, pos = _get_open(data, 2)
    if not primary:
        raise UdptlError("empty primary IFP packet")
    if pos >= len(data):
        raise UdptlError("no error-recovery field")
    choice = data[pos]
    pos += 1
    if choice & 0x80 == _FEC:
        # fec-npackets (an unconstrained INTEGER: length + octets), then SEQUENCE OF OCTET STRING
        octets, pos = _get_open(data, pos)
        if not octets:
            raise UdptlError("empty fec-npackets")
        count, pos = _get_length(data, pos)
        for _ in range(count):
            _, pos = _get_open(data, pos)
        if pos != len(data):
            raise UdptlError("trailing octets after fec-info")
        return UdptlPacket(seq=seq, primary=primary, fec=True)
    count, pos = _get_length(data, pos)
    if count > MAX_SECONDARIES:
        raise UdptlError(f"{count} secondary IFP packets")
    secondaries = []
    for _ in range(count):
        ifp, pos = _get_open(data, pos)
        if not ifp:
            raise UdptlError("empty secondary IFP packet")
        secondaries.append(ifp)
    if pos != len(data):
        raise UdptlError("trailing octets after the secondary IFP packets")
    return UdptlPacket(seq=seq, primary=primary, secondaries=tuple(secondaries))


class UdptlSender:
    """Numbers outgoing IFPs and repeats the last ``redundancy`` of them in each datagram, as many as
    fit ``max_datagram`` octets (the peer's ``T38FaxMaxDatagram``; the primary alone always goes)."""

    def __init__(self, *, redundancy: int = 3, max_datagram: int = 400, first_seq: int = 0) -> None:
        if not 0 <= redundancy <= MAX_SECONDARIES:
            raise ValueError(f"redundancy {redundancy}")
        self.redundancy = redundancy
        self.max_datagram = max_datagram
        self._seq = first_seq % SEQ_MODULO
        self._history: list[bytes] = []  # most recent first

    def send(self, ifp: bytes) -> bytes:
        if not ifp:
            raise ValueError("an empty IFP packet")
        secondaries = list(self._history)
        datagram = encode(UdptlPacket(seq=self._seq, primary=ifp, secondaries=tuple(secondaries)))
        while len(datagram) > self.max_datagram and secondaries:
            secondaries.pop()
            datagram = encode(UdptlPacket(seq=self._seq, primary=ifp, secondaries=tuple(secondaries)))
        self._seq = (self._seq + 1) % SEQ_MODULO
        if self.redundancy:
            self._history.insert(0, ifp)
            del self._history[self.redundancy :]
        return datagram


class UdptlReceiver:
    """Datagrams in, ``(seq, ifp)`` out in sequence order, each IFP once.

    A datagram whose sequence number is behind the one expected (a duplicate, or late after its
    successor rebuilt it) gives nothing; one ahead first gives the missing IFPs its secondaries carry,
    oldest first. Sequence numbers wrap at 65536 (half the space ahead counts as "ahead")."""

    def __init__(self) -> None:
        self._next: int | None = None
        self.malformed = 0
        self.recovered = 0
        self.lost = 0

    def receive(self, datagram: bytes) -> list[tuple[int, bytes]]:
        try:
            packet = decode(datagram)
        except UdptlError:
            self.malformed += 1
            return []
        out: list[tuple[int, bytes]] = []
        if self._next is not None:
            ahead = (packet.seq - self._next) % SEQ_MODULO
            if ahead >= SEQ_MODULO // 2:
                return []
            carried = len(packet.secondaries)
            for missing in range(ahead, 0, -1):  # seq-ahead … seq-1, oldest first
                if missing <= carried:
                    out.append(((packet.seq - missing) % SEQ_MODULO, packet.secondaries[missing - 1]))
                    self.recovered += 1
                else:
                    self.lost += 1
        out.append((packet.seq, packet.primary))
        self._next = (packet.seq + 1) % SEQ_MODULO
        return out

"""UDPTL (T.38 §9.1): PER encoding, redundancy recovering lost datagrams, malformed datagrams dropped."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zvonok.media.udptl import (
    UdptlError,
    UdptlPacket,
    UdptlReceiver,
    UdptlSender,
    decode,
    encode,
)

# a T.30 indicator IFP (type t30-indicator, CNG) and a data IFP, as spandsp builds them (T.38 version 0)
CNG = bytes([0x00 | (1 << 1)])
DATA = bytes([0xC0, 0x01, 0x80, 0x00, 0x05, 0xFF, 0x13, 0x80, 0x00, 0x00])


def test_encoding_is_per_aligned_as_t38_lays_it_out() -> None:
    packet = UdptlPacket(seq=0x1234, primary=DATA, secondaries=(CNG, b"\x04"))
    wire = encode(packet)
    # seq (2 octets) | length + primary | CHOICE redundancy (0x00) | count | (length + IFP) …
    assert wire == b"\x12\x34" + bytes([len(DATA)]) + DATA + b"\x00\x02" + b"\x01" + CNG + b"\x01\x04"
    assert decode(wire) == packet


def test_long_ifp_uses_the_two_octet_length() -> None:
    ifp = bytes(range(256)) * 2
    wire = encode(UdptlPacket(seq=7, primary=ifp))
    assert wire[2:4] == bytes([0x82, 0x00])
    assert decode(wire).primary == ifp


@given(
    seq=st.integers(0, 65535),
    primary=st.binary(min_size=1, max_size=600),
    secondaries=st.lists(st.binary(min_size=1, max_size=200), max_size=4),
)
def test_round_trip(seq: int, primary: bytes, secondaries: list[bytes]) -> None:
    packet = UdptlPacket(seq=seq, primary=primary, secondaries=tuple(secondaries))
    assert decode(encode(packet)) == packet


def test_fec_packets_give_their_primary() -> None:
    # seq 5, primary CNG, fec-info: npackets=1 (length 1, value 3), two fec-data octet strings
    wire = b"\x00\x05\x01" + CNG + b"\x80\x01\x03\x02\x02ab\x01c"
    packet = decode(wire)
    assert (packet.seq, packet.primary, packet.fec) == (5, CNG, True)


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x00",
        b"\x00\x01",
        b"\x00\x01\x00\x00\x00",  # empty primary
        b"\x00\x01\x05ab",  # primary runs past the end
        b"\x00\x01\x01a",  # no error-recovery
        b"\x00\x01\x01a\x00",  # no secondary count
        b"\x00\x01\x01a\x00\x02\x01b",  # two secondaries announced, one present
        b"\x00\x01\x01a\x00\x00zz",  # trailing octets
        b"\x00\x01\xc1a\x00\x00",  # fragmented length form
        b"\x00\x01\x01a\x00\x80",  # truncated two-octet count
        b"\x00\x01\x01a\x00\x40" + b"\x01a" * 64,  # 64 secondaries: abuse
        b"\x00\x01\x01a\x80\x00",  # FEC with empty fec-npackets
        b"\x00\x01\x01a\x00\x01\x00",  # empty secondary
    ],
)
def test_malformed_datagrams_raise_only_udptl_error(wire: bytes) -> None:
    with pytest.raises(UdptlError):
        decode(wire)
    receiver = UdptlReceiver()
    assert receiver.receive(wire) == []
    assert receiver.malformed == 1


@given(st.binary(max_size=80))
def test_random_bytes_never_escape_as_another_exception(wire: bytes) -> None:
    receiver = UdptlReceiver()
    out = receiver.receive(wire)
    assert len(out) <= 17 and receiver.malformed == (0 if out else 1)


def test_a_lost_datagram_is_rebuilt_from_the_next_ones_redundancy() -> None:
    sender = UdptlSender(redundancy=2)
    receiver = UdptlReceiver()
    ifps = [bytes([n + 1]) * (n + 1) for n in range(6)]
    wires = [sender.send(ifp) for ifp in ifps]
    got: list[tuple[int, bytes]] = []
    for n, wire in enumerate(wires):
        if n in (2, 3):  # two in a row lost: redundancy 2 carries both
            continue
        got += receiver.receive(wire)
    assert got == list(enumerate(ifps))
    assert (receiver.recovered, receiver.lost) == (2, 0)


def test_a_gap_longer_than_the_redundancy_is_reported_lost() -> None:
    sender = UdptlSender(redundancy=1)
    receiver = UdptlReceiver()
    wires = [sender.send(bytes([n + 1])) for n in range(5)]
    got = receiver.receive(wires[0]) + receiver.receive(wires[3]) + receiver.receive(wires[4])
    assert [seq for seq, _ in got] == [0, 2, 3, 4]
    assert (receiver.recovered, receiver.lost) == (1, 1)


def test_duplicates_and_late_datagrams_give_nothing() -> None:
    sender = UdptlSender(redundancy=3)
    receiver = UdptlReceiver()
    wires = [sender.send(bytes([n + 1])) for n in range(4)]
    assert receiver.receive(wires[0]) == [(0, b"\x01")]
    assert receiver.receive(wires[2]) == [(1, b"\x02"), (2, b"\x03")]
    assert receiver.receive(wires[1]) == []  # late: already rebuilt
    assert receiver.receive(wires[2]) == []  # duplicate
    assert receiver.receive(wires[3]) == [(3, b"\x04")]


def test_sequence_numbers_wrap() -> None:
    sender = UdptlSender(redundancy=1, first_seq=65534)
    receiver = UdptlReceiver()
    wires = [sender.send(bytes([n + 1])) for n in range(4)]
    got = receiver.receive(wires[0]) + receiver.receive(wires[2]) + receiver.receive(wires[3])
    assert [seq for seq, _ in got] == [65534, 65535, 0, 1]


def test_redundancy_is_trimmed_to_the_max_datagram() -> None:
    sender = UdptlSender(redundancy=3, max_datagram=40)
    for _ in range(3):
        sender.send(b"x" * 15)
    packet = decode(sender.send(b"y" * 15))
    assert len(packet.secondaries) == 1  # 2 + 16 + 1 + 1 + 16 = 36 octets; a second one would not fit
    assert len(encode(packet)) <= 40


def test_random_loss_with_redundancy_three_loses_nothing_when_no_burst_exceeds_it() -> None:
    rng = random.Random(38)
    sender = UdptlSender(redundancy=3)
    receiver = UdptlReceiver()
    ifps = [rng.randbytes(rng.randint(1, 40)) for _ in range(500)]
    got: list[tuple[int, bytes]] = []
    run = 0
    for wire in (sender.send(ifp) for ifp in ifps):
        if run < 3 and rng.random() < 0.2:
            run += 1
            continue
        run = 0
        got += receiver.receive(wire)
    assert [ifp for _, ifp in got] == ifps
    assert receiver.recovered > 50 and receiver.lost == 0

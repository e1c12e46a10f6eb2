"""The DTMF gate (media/dtmf_gate.py): keys that may begin a feature code are withheld, released when no
code follows (another key, or the timeout) and dropped when the code completes. A fake clock throughout."""

from __future__ import annotations

import pytest

from zvonok.media.dtmf import digit_code
from zvonok.media.dtmf_gate import DtmfGate, Verdict

RELAY, HOLD, DROP = Verdict.RELAY, Verdict.HOLD, Verdict.DROP


class Keys:
    """A phone's key presses as telephone-event packets: each press has its own timestamp and sends
    ``packets`` packets (the last ones are its end, repeated), one every 20 ms of the fake clock."""

    def __init__(self, gate: DtmfGate, ts: int = 1000) -> None:
        self.gate, self.ts, self.now = gate, ts, 0.0

    def press(self, digit: str, packets: int = 5) -> list[Verdict]:
        verdicts = []
        for _ in range(packets):
            verdicts.append(self.gate.feed(digit_code(digit), self.ts, self.now))
            self.now += 0.020
        self.ts = (self.ts + 8 * 20 * (packets + 2)) & 0xFFFFFFFF
        self.now += 0.040
        return verdicts

    def wait(self, seconds: float) -> None:
        self.now += seconds
        deadline = self.gate.next_deadline()
        if deadline is not None and deadline <= self.now:
            self.gate.handle_timer(self.now)


def drain(gate: DtmfGate) -> str:
    """What the owner sends, one event after the other, as keys."""
    sent = []
    while (event := gate.next_event()) is not None:
        sent.append("0123456789*#ABCD"[event])
    return "".join(sent)


def test_the_code_is_withheld_then_dropped_and_nothing_is_left_to_send() -> None:
    gate = DtmfGate(("*3",), 1.0)
    keys = Keys(gate)
    assert keys.press("*") == [HOLD] * 5
    assert gate.held == "*" and gate.next_deadline() == pytest.approx(0.080 + 1.0)
    assert keys.press("3") == [DROP] * 5
    assert gate.held == "" and gate.next_deadline() is None and not gate.pending
    assert keys.press("7") == [RELAY] * 5  # back to relaying


def test_another_key_releases_the_withheld_one_and_follows_it() -> None:
    gate = DtmfGate(("*3",), 1.0)
    keys = Keys(gate)
    assert keys.press("*") == [HOLD] * 5
    assert keys.press("5") == [HOLD] * 5  # queued after the "*": it must not overtake it
    assert gate.pending and gate.next_deadline() is None
    assert gate.next_event() == digit_code("*")
    assert not gate.pending  # the owner is sending
    assert keys.press("6") == [HOLD] * 5  # still sending: queued too
    assert drain(gate) == "56"
    assert not gate.pending
    assert keys.press("8") == [RELAY] * 5


def test_the_timeout_releases_a_withheld_key() -> None:
    gate = DtmfGate(("*3",), 1.0)
    keys = Keys(gate)
    keys.press("*")
    keys.wait(0.9)
    assert gate.held == "*" and not gate.pending  # less than the timeout since its last packet
    keys.wait(0.2)
    assert gate.held == "" and gate.pending and gate.next_deadline() is None
    assert drain(gate) == "*"
    assert keys.press("3") == [RELAY] * 5  # too late to be the code's second key


def test_a_long_press_keeps_the_key_withheld_until_timeout_after_its_last_packet() -> None:
    gate = DtmfGate(("*3",), 1.0)
    keys = Keys(gate)
    keys.press("*", packets=100)  # two seconds down
    assert gate.next_deadline() == pytest.approx(99 * 0.020 + 1.0)
    assert keys.press("3") == [DROP] * 5


def test_a_repeated_first_key_releases_the_first_and_withholds_the_second() -> None:
    gate = DtmfGate(("*3",), 1.0)
    keys = Keys(gate)
    keys.press("*")
    assert keys.press("*") == [HOLD] * 5
    assert gate.held == "*" and gate.pending
    assert drain(gate) == "*"
    assert keys.press("3") == [DROP] * 5  # the second "*" and this "3" are the code
    assert not gate.pending


def test_several_codes_and_longer_ones() -> None:
    gate = DtmfGate(("*3", "##9", "#1"), 1.0)
    keys = Keys(gate)
    assert keys.press("#") == [HOLD] * 5
    assert keys.press("#") == [HOLD] * 5
    assert gate.held == "##"
    assert keys.press("9") == [DROP] * 5
    keys.press("#")
    assert keys.press("1") == [DROP] * 5
    keys.press("#")
    keys.press("#")
    assert keys.press("4") == [HOLD] * 5
    assert drain(gate) == "##4"


def test_a_code_typed_while_released_keys_are_sent_is_still_caught() -> None:
    gate = DtmfGate(("*3",), 1.0)
    keys = Keys(gate)
    keys.press("*")
    keys.press("1")  # releases "*1"
    assert gate.next_event() == digit_code("*")
    assert keys.press("*") == [HOLD] * 5
    assert keys.press("3") == [DROP] * 5
    assert drain(gate) == "1"


def test_late_packets_and_flash() -> None:
    gate = DtmfGate(("*3",), 1.0)
    assert gate.feed(digit_code("1"), 5000, 0.0) is RELAY
    assert gate.feed(digit_code("1"), 4000, 0.1) is DROP  # an earlier event's late packet
    assert gate.feed(16, 6000, 0.2) is RELAY  # a flash begins no code
    assert gate.feed(digit_code("*"), 2**32 - 10, 0.3) is DROP  # before 6000 across the wrap: late
    # timestamps wrap around
    gate = DtmfGate(("*3",), 1.0)
    assert gate.feed(digit_code("*"), 2**32 - 160, 0.0) is HOLD
    assert gate.feed(digit_code("3"), 800, 0.2) is DROP


def test_abandon_forgets_what_was_released() -> None:
    gate = DtmfGate(("*3",), 1.0)
    keys = Keys(gate)
    keys.press("*")
    keys.press("2")
    gate.abandon()
    assert not gate.pending and gate.next_event() is None
    assert keys.press("2") == [RELAY] * 5


def test_bad_configuration() -> None:
    with pytest.raises(ValueError):
        DtmfGate((), 1.0)
    with pytest.raises(ValueError):
        DtmfGate(("*3",), 0.0)
    with pytest.raises(ValueError):
        DtmfGate(("*x",), 1.0)

"""Ad-hoc three-way calling with three real phones (pjsua2), the audio checked by spectrum.

A (741) sends 1000 Hz, B (742) 440 Hz, C (743) 620 Hz. A calls B, holds B with the phone's hold (pjsua
offers sendonly and keeps sending its tone on the held call: a phone's own hold music, which the room must
not pass on), calls C and presses ``*3`` (RFC 4733) on that second call. Then each hears the other two and
not itself. A hangs up both calls: B and C stay connected and hear each other only. B hangs up: C gets BYE.
Each call keeps its own CDR (A→B and A→C, both answered). C's phone never receives the code's keys (the
engine withholds a ``*`` on A's leg until it knows that no code follows), while ``*1`` typed by A before
it reaches C as two key presses.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from . import pjsua_fixtures
from .pjsua_fixtures import PhoneFactory, power, window
from .test_calls_softphone import calls_server, cdrs

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

A, B, C = "741", "742", "743"
TONES = {A: 1000.0, B: 440.0, C: 620.0}
PHASE = 4.0  # seconds of audio per phase

pjsua_phones = pjsua_fixtures.pjsua_phones


@pytest.fixture(scope="module")
def threeway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    with calls_server(tmp_path_factory, "threeway", [A, B, C], {}) as running:
        yield running



def check(samples: np.ndarray, listener: str, heard: set[str], what: str) -> None:
    pw = {n: power(samples, f) for n, f in TONES.items()}
    loud = [pw[n] for n in heard]
    assert min(loud) > 1e5, (what, listener, pw)
    for other in set(pw) - heard:
        assert pw[other] < min(loud) / 50, (what, listener, other, pw)


def test_star_three_joins_a_held_call_and_a_second_one(threeway_server: tuple[Any, Any],
                                                        pjsua_phones: PhoneFactory) -> None:
    srv, seeded = threeway_server
    proxy = f"127.0.0.1:{srv.sip_port}"
    phones = {}
    for number, tone in TONES.items():
        phones[number] = p = pjsua_phones(number, tone=tone)
        p.register(number, harness.password_for(number), seeded.domain, proxy)
    a, b, c = phones[A], phones[B], phones[C]

    a1 = a.call(f"sip:{B}@{seeded.domain}")
    b1 = b.wait_incoming()
    b.answer(b1)
    a.wait_state(a1, "CONFIRMED")
    b.wait_state(b1, "CONFIRMED")
    a.hold(a1)
    time.sleep(1.0)
    a2 = a.call(f"sip:{C}@{seeded.domain}")
    c2 = c.wait_incoming()
    c.answer(c2)
    a.wait_state(a2, "CONFIRMED")
    c.wait_state(c2, "CONFIRMED")
    time.sleep(1.0)
    a.dtmf(a2, "*1")  # begins the code but is none: sent on to C once the "1" shows it
    assert [c.wait_event("dtmf", call=c2)["digit"] for _ in range(2)] == ["*", "1"]
    a.dtmf(a2, "*3")
    joined = time.monotonic() + 1.5  # the keys' own length, the merge, B's re-INVITE to sendrecv
    time.sleep(1.5 + PHASE)
    a_left = time.monotonic()
    a.hangup(a2)
    a.wait_ended(a2)
    a.hangup(a1)
    a.wait_ended(a1)
    pair_from = time.monotonic() + 1.0
    time.sleep(1.0 + PHASE)
    end = time.monotonic()
    b.hangup(b1)
    b.wait_ended(b1)
    c.wait_ended(c2)  # B alone is no conversation: C got BYE

    # C's phone got the "*1" and nothing of the code (its keys would have arrived within the phase)
    assert [e["digit"] for e in c.history if e.get("event") == "dtmf"] == ["*", "1"]
    assert not [e for e in b.history if e.get("event") == "dtmf"]

    rec_a, rec_b, rec_c = a.recording(a2), b.recording(b1), c.recording(c2)
    # all three: from the join to A's hang-up, each counted back from its own recording's end
    check(window(rec_a, a_left - joined, 0.4), A, {B, C}, "three")
    check(window(rec_b, end - joined, end - a_left + 0.4), B, {A, C}, "three")
    check(window(rec_c, end - joined, end - a_left + 0.4), C, {A, B}, "three")
    # A gone: B and C only
    check(window(rec_b, end - pair_from, 0.4), B, {C}, "pair")
    check(window(rec_c, end - pair_from, 0.4), C, {B}, "pair")

    placed = cdrs(threeway_server, A, 2)
    assert sorted(cdr["callee_number"] for cdr in placed) == [B, C], placed
    assert all(cdr["disposition"] == "answered" for cdr in placed), placed

"""FailureThrottle with a hand-stepped clock: exact behaviour at the window and ban boundaries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zvonok.netaddr import address_key
from zvonok.sip.digest import Algorithm, DigestVerifier, NonceManager
from zvonok.sip.message import Request, Response, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.telephony import throttle
from zvonok.telephony.auth import Authenticator, CredentialCache
from zvonok.telephony.b2bua import CallEngine
from zvonok.telephony.location import Location
from zvonok.telephony.throttle import FailureThrottle

IP = "192.0.2.1"


def test_ban_on_the_failure_that_exceeds_the_limit() -> None:
    t = FailureThrottle(limit=3, window=60.0, ban_time=300.0)
    assert [t.record_failure(IP, float(s)) for s in range(3)] == [False, False, False]
    assert not t.is_blocked(IP, 2.0)
    assert t.record_failure(IP, 3.0) is True
    assert t.is_blocked(IP, 3.0)
    assert t.record_failure(IP, 4.0) is False  # already banned: not a new ban
    assert not t.is_blocked("192.0.2.2", 4.0)


def test_window_is_half_open() -> None:
    t = FailureThrottle(limit=2, window=10.0, ban_time=100.0)
    assert not t.record_failure(IP, 0.0)
    assert not t.record_failure(IP, 5.0)
    # The failure at t=0 is exactly 10 s old at t=10: it no longer counts.
    assert not t.record_failure(IP, 10.0)
    assert not t.is_blocked(IP, 10.0)
    # At 14.999 the failures at 5, 10 and 14.999 are all inside (4.999, 14.999].
    assert t.record_failure(IP, 14.999)


def test_ban_expires_exactly_after_ban_time_and_history_restarts() -> None:
    t = FailureThrottle(limit=1, window=10.0, ban_time=30.0)
    t.record_failure(IP, 0.0)
    assert t.record_failure(IP, 1.0)
    assert t.is_blocked(IP, 30.999)
    assert not t.is_blocked(IP, 31.0)
    # Failures before the ban were cleared: one failure after it is within the limit.
    assert not t.record_failure(IP, 31.0)
    assert t.record_failure(IP, 32.0)
    assert t.is_blocked(IP, 32.0)


def test_failures_during_a_ban_do_not_extend_it() -> None:
    t = FailureThrottle(limit=0, window=10.0, ban_time=5.0)
    assert t.record_failure(IP, 0.0)  # limit 0: the first failure bans
    for now in (1.0, 2.0, 4.9):
        assert not t.record_failure(IP, now)
    assert not t.is_blocked(IP, 5.0)
    assert t.record_failure(IP, 5.0)


def test_success_forgets_failures_but_not_a_ban() -> None:
    t = FailureThrottle(limit=2, window=60.0, ban_time=60.0)
    t.record_failure(IP, 0.0)
    t.record_failure(IP, 1.0)
    t.record_success(IP)
    assert not t.record_failure(IP, 2.0)
    assert not t.record_failure(IP, 3.0)
    assert t.record_failure(IP, 4.0)
    t.record_success(IP)
    assert t.is_blocked(IP, 5.0)
    t.record_success("never seen")  # no-op


def test_a_tagged_success_forgets_only_failures_with_its_tag() -> None:
    # issue 8: a valid login for one account must not reset an address's guesses at another
    t = FailureThrottle(limit=3, window=60.0, ban_time=60.0)
    t.record_failure(IP, 0.0, "victim")
    t.record_failure(IP, 1.0, "own")
    t.record_failure(IP, 2.0, "victim")
    t.record_success(IP, "own")
    assert not t.record_failure(IP, 3.0, "victim")
    assert t.record_failure(IP, 4.0, "victim")  # four against "victim": over the limit
    other = "192.0.2.2"
    t.record_failure(other, 0.0, "own")
    t.record_success(other, "own")
    assert t.tracked_sources == 0  # nothing left of it is kept


@pytest.mark.parametrize(("address", "key"), [
    ("2001:db8::1", "2001:db8::/64"), ("[2001:db8::ffff:1]", "2001:db8::/64"),
    ("2001:db8:0:1::1", "2001:db8:0:1::/64"), ("::ffff:192.0.2.7", "192.0.2.7"), ("192.0.2.7", "192.0.2.7"),
    ("host.example", "host.example"),
])
def test_address_key_folds_an_ipv6_64(address: str, key: str) -> None:
    assert address_key(address) == key


def test_sources_are_independent_and_opaque() -> None:
    t = FailureThrottle(limit=1, window=60.0, ban_time=60.0)
    a, b = ("tenant-1", "2001:db8::/64"), ("tenant-2", "2001:db8::/64")
    t.record_failure(a, 0.0)
    t.record_failure(b, 0.0)
    assert t.record_failure(a, 1.0)
    assert t.is_blocked(a, 1.0) and not t.is_blocked(b, 1.0)


def test_old_entries_are_pruned() -> None:
    t = FailureThrottle(limit=5, window=10.0, ban_time=20.0)
    for i in range(100):
        t.record_failure(f"10.0.0.{i}", 0.0)
    assert t.tracked_sources == 100
    t.record_failure("10.0.1.1", 9.999)
    assert t.tracked_sources == 101
    t.record_failure("10.0.1.1", 10.0)  # the t=0 histories have left the window
    assert t.tracked_sources == 1


def test_expired_bans_are_pruned() -> None:
    t = FailureThrottle(limit=0, window=10.0, ban_time=100.0)
    for i in range(50):
        assert t.record_failure(f"10.0.0.{i}", float(i))
    assert t.banned_sources == 50
    assert not t.is_blocked("other", 110.0)  # bans from t <= 10 have expired
    assert t.banned_sources == 39
    assert t.is_blocked("10.0.0.11", 110.0)
    assert not t.is_blocked("10.0.0.11", 111.0)


def test_max_sources_drops_the_oldest() -> None:
    t = FailureThrottle(limit=1, window=100.0, ban_time=100.0, max_sources=3)
    for i, src in enumerate("abcd"):
        t.record_failure(src, float(i))
    assert t.tracked_sources == 3
    # "a" was dropped: its next failure is its first again.
    assert not t.record_failure("a", 4.0)
    # "c" and "d" are still tracked ("b" went when "a" came back).
    assert t.record_failure("d", 5.0)
    assert t.record_failure("c", 6.0)


def test_ban_table_is_bounded_too() -> None:
    t = FailureThrottle(limit=0, window=100.0, ban_time=100.0, max_sources=2)
    for i, src in enumerate("abc"):
        assert t.record_failure(src, float(i))
    assert t.banned_sources == 2
    assert not t.is_blocked("a", 3.0)  # the ban closest to expiry made room
    assert t.is_blocked("b", 3.0) and t.is_blocked("c", 3.0)


def test_activity_refreshes_lru_position() -> None:
    t = FailureThrottle(limit=2, window=100.0, ban_time=100.0, max_sources=2)
    t.record_failure("a", 0.0)
    t.record_failure("b", 1.0)
    t.record_failure("a", 2.0)  # "a" is now the most recent
    t.record_failure("c", 3.0)  # evicts "b"
    assert t.record_failure("a", 4.0)


@pytest.mark.parametrize(
    ("limit", "window", "ban_time", "max_sources"),
    [(-1, 1.0, 1.0, 1), (1, 0.0, 1.0, 1), (1, 1.0, 0.0, 1), (1, 1.0, 1.0, 0)],
)
def test_constructor_validation(limit: int, window: float, ban_time: float, max_sources: int) -> None:
    with pytest.raises(ValueError):
        FailureThrottle(limit, window, ban_time, max_sources)


@given(
    limit=st.integers(0, 4),
    events=st.lists(st.tuples(st.sampled_from("abc"), st.floats(0.0, 3.0), st.booleans()), max_size=60),
)
def test_matches_a_naive_model(limit: int, events: list[tuple[str, float, bool]]) -> None:
    window, ban_time = 5.0, 7.0
    t = FailureThrottle(limit, window, ban_time)
    history: dict[str, list[float]] = {}
    banned_until: dict[str, float] = {}
    now = 0.0
    for source, step, success in events:
        now += step
        blocked = now < banned_until.get(source, float("-inf"))
        assert t.is_blocked(source, now) is blocked
        if success:
            t.record_success(source)
            history.pop(source, None)
            continue
        expected = False
        if not blocked:
            recent = [x for x in history.get(source, []) if x > now - window] + [now]
            if len(recent) > limit:
                expected = True
                banned_until[source] = now + ban_time
                recent = []
            history[source] = recent
        assert t.record_failure(source, now) is expected


def test_module_reads_no_clock() -> None:
    tree = ast.parse(Path(throttle.__file__).read_text())
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not (names | modules) & {"time", "asyncio", "datetime"}


async def test_the_invite_flood_limit_counts_an_ipv6_64_as_one_source() -> None:
    # issue 8 review: the flood limiter counted per address, so a host rotating through its /64 was never
    # limited; it keys by the same address_key as the authentication throttle
    answered: list[Response] = []

    class Sip:
        local_host, local_port, t1, t2 = "192.0.2.1", 5060, 0.5, 4.0

        def respond(self, _txn: object, response: Response) -> None:
            answered.append(response)

    async def nobody(_domain: str, _user: str) -> None:
        return None

    auth = Authenticator(credentials=CredentialCache(nobody),
                         verifier=DigestVerifier(NonceManager(b"k" * 32, 300, bytes), [Algorithm.MD5]),
                         throttle=FailureThrottle(100, 60, 60), to_tag=lambda: "t")
    engine = CallEngine(sip=Sip(), media=None, auth=auth, location=Location(), directory=None,  # type: ignore[arg-type]
                        bus=None, flood=FailureThrottle(limit=1, window=1.0, ban_time=30.0))  # type: ignore[arg-type]

    def invite(n: int) -> Request:
        msg = parse_datagram((
            "INVITE sip:102@acme.test SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK" + str(n)
            + f"\r\nMax-Forwards: 70\r\nFrom: <sip:101@acme.test>;tag=f{n}\r\nTo: <sip:102@acme.test>\r\n"
            f"Call-ID: flood-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())
        assert isinstance(msg, Request)
        return msg

    for n, host in enumerate(["2001:db8::1", "2001:db8::2", "2001:db8:0:1::1"]):
        await engine._invite(object(), invite(n), Peer(transport="udp", host=host, port=5060))  # type: ignore[arg-type]
    # the first is challenged; the second, from the same /64, is over the limit; the next /64 is not
    assert [r.status for r in answered] == [407, 503, 407]

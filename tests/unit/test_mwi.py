"""Message-waiting indication: RFC 3842 bodies (build, parse, round trip, files in tests/data/mwi) and the
subscription table (expiry, refresh, bounds) on a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from zvonok.sip.errors import SipParseError
from zvonok.sip.message_summary import MessageCounts, MessageSummary, build_summary, parse_summary
from zvonok.telephony.subscription_state import Subscription, Subscriptions, TableFull, granted_expires

DATA = Path(__file__).resolve().parents[1] / "data" / "mwi"


def test_build_voice_summary() -> None:
    body = build_summary(MessageSummary.voice(2, 8, account="sip:101@acme.example"))
    assert body == b"Messages-Waiting: yes\r\nMessage-Account: sip:101@acme.example\r\nVoice-Message: 2/8\r\n"
    assert build_summary(MessageSummary.voice(0, 3)) == b"Messages-Waiting: no\r\nVoice-Message: 0/3\r\n"
    urgent = MessageSummary(waiting=True, classes={"Voice-Message": MessageCounts(new=4, old=8, new_urgent=1,
                                                                                  old_urgent=2)})
    assert build_summary(urgent) == b"Messages-Waiting: yes\r\nVoice-Message: 4/8 (1/2)\r\n"


def test_parse_file_with_extra_lines_and_message_headers() -> None:
    summary = parse_summary((DATA / "summary-with-message-headers.txt").read_bytes())
    assert summary.waiting is True and summary.account == "sip:alice@vmail.example.com"
    assert summary.classes == {"Voice-Message": MessageCounts(new=4, old=8, new_urgent=1, old_urgent=2),
                               "Fax-Message": MessageCounts(new=0, old=1)}
    none = parse_summary((DATA / "summary-none-new.txt").read_bytes())
    assert (none.waiting, none.classes["Voice-Message"]) == (False, MessageCounts(new=0, old=3))


@pytest.mark.parametrize("summary", [
    MessageSummary.voice(1, 0), MessageSummary.voice(0, 0, account="sip:7@x.example"),
    MessageSummary(waiting=True, account="sip:a@b", classes={"Voice-Message": MessageCounts(new=3, old=1,
                                                                                               new_urgent=1)}),
])
def test_round_trip(summary: MessageSummary) -> None:
    assert parse_summary(build_summary(summary)) == summary
    assert build_summary(parse_summary(build_summary(summary))) == build_summary(summary)


@pytest.mark.parametrize("body", [b"", b"Voice-Message: 1/2\r\n", b"Messages-Waiting: maybe\r\n"])
def test_bad_bodies(body: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse_summary(body)
    assert info.value.status == 400


def test_lenient_spacing_and_bare_lf() -> None:
    summary = parse_summary(b"messages-waiting:YES\nVoice-Message:  3 / 5  ( 0 / 1 )\n")
    assert summary.waiting and summary.classes["Voice-Message"] == MessageCounts(new=3, old=5, old_urgent=1)


def sub(key: str, ext: int = 1, expires_at: float = 100.0, tenant: int = 1) -> Subscription:
    return Subscription(key=(key, "t", "l"), tenant_id=tenant, extension_id=ext, account="sip:101@a",
                        source=f"udp:127.0.0.1:{5000 + len(key)}", expires_at=expires_at)


def test_granted_expires() -> None:
    assert [granted_expires(v) for v in (None, 0, -5, 10, 600, 86400)] == [3600, 0, 0, 60, 600, 3600]


def test_subscriptions_expire_refresh_and_remove() -> None:
    table = Subscriptions()
    a, b, c = sub("a", expires_at=100.0), sub("b", expires_at=50.0), sub("c", ext=2, expires_at=70.0)
    for s in (a, b, c):
        assert table.add(s) is None
    assert table.next_deadline() == 50.0
    assert table.of_extension(1, 1) == [a, b] and table.of_extension(1, 2) == [c]
    assert table.of_extension(2, 1) == []  # another tenant's extension 1
    assert table.refresh(b.key, 200.0) is b
    assert table.next_deadline() == 70.0
    assert table.expire(69.9) == []
    assert table.expire(70.0) == [c] and table.of_extension(1, 2) == [] and len(table) == 2
    table.remove(a)
    table.remove(a)  # twice: nothing
    assert table.get(a.key) is None and table.of_extension(1, 1) == [b]
    assert table.refresh(("x", "y", "z"), 1.0) is None


def test_subscriptions_are_bounded() -> None:
    table = Subscriptions(per_extension=2, total=3)
    first, second, third = sub("1"), sub("22"), sub("333")
    table.add(first)
    table.add(second)
    assert table.add(third) is first  # the oldest of the extension goes
    assert table.of_extension(1, 1) == [second, third]
    table.add(sub("4444", ext=9))
    with pytest.raises(TableFull):
        table.add(sub("55555", ext=8))

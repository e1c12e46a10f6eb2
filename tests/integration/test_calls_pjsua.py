"""Calls between pjsua2 (PJSIP) softphones through Zvonok, with the audio checked by FFT.

Each phone loops its own sine (A 440 Hz, B 1000 Hz, C 1500 Hz) into its calls and records what it
receives; a call is good when each side's recording is dominated by the other side's tone. pjsua2 is
here for what baresip 1.0 cannot script: DTMF checks, hold by command, and attended transfer
(REFER with Replaces, RFC 3891 / RFC 5589 §7).

The server and the CDR/FFT helpers are those of the baresip tests (``test_calls_softphone``).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

import pytest

from zvonok.media.hold_music import DEFAULT_NOTES

from . import pjsua_fixtures, test_calls_softphone
from .pjsua_fixtures import PhoneFactory
from .pjsua_phone import PjsuaPhone
from .test_calls_softphone import cdrs, dominant_frequency, harness

pytestmark = pytest.mark.integration

# fixtures used here by name: the baresip tests' server (extensions 701-705) and the phone factory
server = test_calls_softphone.server
pjsua_phones = pjsua_fixtures.pjsua_phones

A, B, C = "701", "702", "703"
TONES = {A: 440, B: 1000, C: 1500}


def registered(phones: PhoneFactory, server: tuple[Any, Any], number: str, **options: Any) -> PjsuaPhone:
    """A phone for extension ``number`` sending its tone, registered through the server's SIP port."""
    srv, seeded = server
    phone = phones(number, tone=TONES[number])
    phone.register(number, harness.password_for(number), seeded.domain, f"127.0.0.1:{srv.sip_port}", **options)
    return phone


def connect(caller: PjsuaPhone, callee: PjsuaPhone, uri: str) -> tuple[int, int]:
    """``caller`` dials ``uri``; ``callee`` (auto-answering) picks up. The two call handles."""
    outgoing = caller.call(uri)
    caller.wait_state(outgoing, "CONFIRMED")
    incoming = callee.wait_incoming()
    callee.wait_state(incoming, "CONFIRMED")
    return outgoing, incoming


def heard(phone: PjsuaPhone, call: int, last: float | None = None) -> float:
    """The dominant frequency of what ``phone`` received in ``call`` (which must have ended)."""
    return dominant_frequency(phone.recording(call), last=last)


def test_two_pjsua_phones_hear_each_other(server: tuple[Any, Any], pjsua_phones: PhoneFactory) -> None:
    srv, seeded = server
    earlier = len(cdrs(server, A, 0))
    a = registered(pjsua_phones, server, A)
    b = registered(pjsua_phones, server, B, auto_answer=True)
    ab, ba = connect(a, b, f"sip:{B}@{seeded.domain}")
    time.sleep(3)  # a few seconds of audio both ways
    a.hangup(ab)
    assert a.wait_ended(ab)["last_status"] == 200
    b.wait_ended(ba)  # our BYE reached B
    assert abs(heard(a, ab) - TONES[B]) < 20
    assert abs(heard(b, ba) - TONES[A]) < 20
    (theirs,) = b.calls()
    assert (theirs["state"], theirs["role"]) == ("DISCONNECTED", "callee")
    assert f"sip:{A}@{seeded.domain}" in theirs["remote_uri"]
    cdr = cdrs(server, A, earlier + 1)[-1]
    assert (cdr["callee_number"], cdr["disposition"], cdr["hangup_side"]) == (B, "answered", "caller")
    assert cdr["billsec"] >= 2 and cdr["duration"] >= cdr["billsec"]


def test_dtmf_and_hold(server: tuple[Any, Any], pjsua_phones: PhoneFactory) -> None:
    """RFC 4733 digits from A reach B through the relay; after hold and unhold the audio flows again."""
    srv, seeded = server
    a = registered(pjsua_phones, server, A)
    b = registered(pjsua_phones, server, B, auto_answer=True)
    ab, ba = connect(a, b, f"sip:{B}@{seeded.domain}")
    time.sleep(0.5)
    a.dtmf(ab, "159#")
    digits = [b.wait_event("dtmf", call=ba)["digit"] for _ in range(4)]
    assert digits == ["1", "5", "9", "#"]
    a.hold(ab)
    b.wait_event("media_state", call=ba, media=["remote_hold"])  # the server passed the hold on
    a.unhold(ab)
    b.wait_event("media_state", call=ba, media=["active"])
    time.sleep(2.5)
    b.hangup(ba)
    a.wait_ended(ab)
    b.wait_ended(ba)
    assert abs(heard(a, ab, last=1.0) - TONES[B]) < 20
    assert abs(heard(b, ba, last=1.0) - TONES[A]) < 20
    invites = a.sent("INVITE")
    assert [m.text.count("a=sendonly") for m in invites][-2:] == [1, 0]  # the hold offer, then resume


def test_a_held_party_hears_music_on_hold(server: tuple[Any, Any], pjsua_phones: PhoneFactory) -> None:
    """A holds the call: B is told it is held and hears the built-in music (one of its notes by FFT, not
    A's 440 Hz); after the resume B hears A again."""
    srv, seeded = server
    a = registered(pjsua_phones, server, A)
    b = registered(pjsua_phones, server, B, auto_answer=True)
    ab, ba = connect(a, b, f"sip:{B}@{seeded.domain}")
    time.sleep(1.0)
    a.hold(ab)
    b.wait_event("media_state", call=ba, media=["remote_hold"])
    time.sleep(3.0)
    b.hangup(ba)  # while the music plays
    a.wait_ended(ab)
    b.wait_ended(ba)
    music = heard(b, ba, last=2.0)
    assert min(abs(music - note) for note in DEFAULT_NOTES) < 20, music
    # a second call: hold, resume, and B hears A's tone again (the music stopped)
    ab, ba = connect(a, b, f"sip:{B}@{seeded.domain}")
    a.hold(ab)
    b.wait_event("media_state", call=ba, media=["remote_hold"])
    time.sleep(1.5)
    a.unhold(ab)
    b.wait_event("media_state", call=ba, media=["active"])
    time.sleep(2.5)
    b.hangup(ba)
    a.wait_ended(ab)
    b.wait_ended(ba)
    assert abs(heard(b, ba, last=1.0) - TONES[A]) < 20


def test_blind_transfer_pjsua(server: tuple[Any, Any], pjsua_phones: PhoneFactory) -> None:
    """A calls B; B transfers A to C with a plain REFER; A and C hear each other, the server drops B."""
    srv, seeded = server
    earlier = len(cdrs(server, A, 0))
    a = registered(pjsua_phones, server, A)
    b = registered(pjsua_phones, server, B, auto_answer=True)  # leaves the BYE to the server
    c = registered(pjsua_phones, server, C, auto_answer=True)
    ab, ba = connect(a, b, f"sip:{B}@{seeded.domain}")
    b.xfer(ba, f"sip:{C}@{seeded.domain}")
    ca = c.wait_incoming()
    c.wait_state(ca, "CONFIRMED")
    assert b.wait_transfer(ba)["code"] == 200
    assert b.wait_ended(ba)["last_status"] == 200  # the server's BYE
    (refer,) = b.sent("REFER")
    assert refer.header("Refer-To") == f"sip:{C}@{seeded.domain}"  # pjsua sends xfer()'s text verbatim
    time.sleep(3)
    a.hangup(ab)
    a.wait_ended(ab)
    c.wait_ended(ca)
    assert abs(heard(a, ab, last=2.0) - TONES[C]) < 20
    assert abs(heard(c, ca) - TONES[A]) < 20
    cdr = cdrs(server, A, earlier + 1)[-1]
    assert (cdr["disposition"], cdr["callee_number"]) == ("answered", B)
    detail = harness.http_json(f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}/cdrs/{cdr['id']}", seeded.token)
    legs = {(leg["number"], leg["cause"]) for leg in detail["legs"]}
    assert (B, "transferred") in legs and (C, "normal_clearing") in legs


def refer_to_parts(phone: PjsuaPhone) -> tuple[str, dict[str, str], list[str]]:
    """The phone's one REFER's Refer-To: target URI, its ``?headers`` (%-escaped) and Replaces' parts."""
    (refer,) = phone.sent("REFER")
    target, _, params = (refer.header("Refer-To") or "").strip("<>").partition("?")
    fields = dict(p.split("=", 1) for p in params.split("&"))
    return target, fields, unquote(fields.get("Replaces", "")).split(";")


def tag_of(header: str | None) -> str:
    assert header is not None and ";tag=" in header, header
    return header.split(";tag=", 1)[1].split(";", 1)[0]


def answer_tag(phone: PjsuaPhone, direction: str, call_id: str) -> str:
    """The To tag of the 200 to the INVITE of dialog ``call_id`` that ``phone`` sent (TX) or got (RX)."""
    ok = next(m for m in phone.sip_messages() if m.direction == direction and m.header("Call-ID") == call_id
              and m.start_line.startswith("SIP/2.0 200") and (m.header("CSeq") or "").endswith("INVITE"))
    return tag_of(ok.header("To"))


def live_call(phone: PjsuaPhone, timeout: float = 10.0) -> int:
    """The handle of the phone's one established call, once it has exactly one."""
    deadline = time.monotonic() + timeout
    while True:
        up = [c["call"] for c in phone.calls() if c["state"] == "CONFIRMED"]
        if len(up) == 1 or time.monotonic() > deadline:
            assert len(up) == 1, phone.calls()
            return int(up[0])
        time.sleep(0.1)


def test_attended_transfer_pjsua(server: tuple[Any, Any], pjsua_phones: PhoneFactory) -> None:
    """A calls B; B holds A and consults C; B joins A and C with REFER + Replaces; B drops out.

    At the end A and C each have one established call carrying the other's tone (the server may
    re-bridge its legs or re-invite: the live call is looked up), and both of B's calls are over.
    B hangs up by itself after the NOTIFY 200 as desk phones do, so its BYE crosses the server's.
    """
    srv, seeded = server
    earlier_a, earlier_b = len(cdrs(server, A, 0)), len(cdrs(server, B, 0))
    a = registered(pjsua_phones, server, A)
    b = registered(pjsua_phones, server, B, auto_answer=True, hangup_on_transfer=True)  # like a desk phone
    c = registered(pjsua_phones, server, C, auto_answer=True)
    ab, ba = connect(a, b, f"sip:{B}@{seeded.domain}")
    b.hold(ba)
    b.wait_event("media_state", call=ba, media=["local_hold"])
    bc, cb = connect(b, c, f"sip:{C}@{seeded.domain}")
    b.xfer_replaces(ba, bc)
    assert b.wait_transfer(ba)["code"] == 200
    b.wait_ended(ba)
    b.wait_ended(bc)
    a_call, c_call = live_call(a), live_call(c)
    time.sleep(3)
    a.hangup(a_call)
    a.wait_ended(a_call)
    c.wait_ended(c_call)
    assert abs(heard(a, a_call, last=2.0) - TONES[C]) < 20
    assert abs(heard(c, c_call, last=2.0) - TONES[A]) < 20
    # the call as dialed (A to B) goes on with C in B's place; B's consultation call ends "transferred"
    cdr = cdrs(server, A, earlier_a + 1)[-1]
    assert (cdr["callee_number"], cdr["disposition"], cdr["cause"]) == (B, "answered", "normal_clearing")
    detail = harness.http_json(f"{srv.http_url}/api/v1/tenants/{seeded.tenant_id}/cdrs/{cdr['id']}", seeded.token)
    assert [(leg["number"], leg["cause"]) for leg in detail["legs"]] == [
        (A, "normal_clearing"), (B, "transferred"), (C, "normal_clearing")]
    consultation = cdrs(server, B, earlier_b + 1)[-1]
    assert (consultation["callee_number"], consultation["cause"]) == (C, "transferred")
    # what the phone sent: Refer-To names B's consultation dialog, tags as B's INVITE/200 had them
    target, fields, replaces = refer_to_parts(b)
    assert (target, fields["Require"]) == (f"sip:{C}@{seeded.domain}", "replaces")
    consult_invite = b.sent("INVITE")[-1]
    call_id = consult_invite.header("Call-ID") or ""
    assert replaces == [call_id, f"to-tag={answer_tag(b, 'RX', call_id)}",
                        f"from-tag={tag_of(consult_invite.header('From'))}"]


def test_attended_transfer_between_pjsua_phones_directly(pjsua_phones: PhoneFactory) -> None:
    """No server: pins down what pjsua sends for an attended transfer, the shapes the B2BUA must accept.

    B's REFER names its B-C dialog in Refer-To (``?Require=replaces&Replaces=<call-id>;to-tag=<C's
    tag>;from-tag=<B's tag>``, escaped); A, the transferee, sends the INVITE with ``Replaces`` itself;
    C swaps its call with B for the new one from A and BYEs B.
    """
    a, b, c = (pjsua_phones(n, tone=TONES[n]) for n in (A, B, C))
    a.local_account(A)
    b_uri = b.local_account(B, auto_answer=True, hangup_on_transfer=True)
    c_uri = c.local_account(C, auto_answer=True)
    ab, ba = connect(a, b, b_uri)
    b.hold(ba)
    bc, cb = connect(b, c, c_uri)
    bc_info = next(x for x in b.calls() if x["call"] == bc)
    b.xfer_replaces(ba, bc)
    assert b.wait_transfer(ba)["code"] == 200
    b.wait_ended(ba)  # hangup_on_transfer
    assert c.wait_ended(cb)["last_status"] == 410  # pjsua's cause for the replaced call
    assert a.wait_event("transfer_request", call=ab)["dest"].startswith(f"<{c_uri}?Require=replaces&Replaces=")
    replaced = c.wait_event("call_replaced", call=cb)
    target, fields, replaces = refer_to_parts(b)
    b_tag = tag_of(b.sent("INVITE")[-1].header("From"))  # B's INVITE to C
    c_tag = answer_tag(c, "TX", bc_info["sip_call_id"])
    assert (target, fields["Require"]) == (c_uri, "replaces")
    assert replaces == [bc_info["sip_call_id"], f"to-tag={c_tag}", f"from-tag={b_tag}"]
    assert b.sent("REFER")[0].header("Referred-By") == f"<sip:{B}@127.0.0.1>"
    invite = a.sent("INVITE")[-1]
    assert invite.header("Replaces") == ";".join(replaces) and invite.header("Require") == "replaces"
    assert invite.start_line == f"INVITE {c_uri} SIP/2.0"
    a_call = live_call(a)
    time.sleep(3)
    a.hangup()
    a.wait_ended(a_call)
    c.wait_ended(replaced["new_call"])
    ab_end = a.wait_ended(ab)
    assert ab_end["last_status"] == 200  # B's BYE of the original call
    assert abs(heard(a, a_call, last=2.0) - TONES[C]) < 20
    assert abs(heard(c, replaced["new_call"], last=2.0) - TONES[A]) < 20

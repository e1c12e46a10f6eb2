"""Busy-lamp field through a running Zvonok: a SIPp BLF key (``blf_subscriber.xml``) subscribes, with
digest authentication, to extension B's ``dialog`` event; a SIPp caller then calls B (a registered SIPp
that rings and answers), the call is hung up, and the key's NOTIFYs arrive in order with their bodies:
idle, trying, early (with the ``**B`` pickup target and the caller as remote identity), confirmed,
terminated; Expires: 0 ends the subscription with a terminated NOTIFY. The scenario checks each body
with regular expressions; this test parses every NOTIFY body SIPp logged as RFC 4235 XML.
BLF pickup: the early NOTIFY names the call-id and tags of our INVITE to the ringing phone; the watcher
sends an INVITE with Replaces naming them (RFC 3891), is connected to the caller (200), the ringing phone
is cancelled, and the caller's BYE reaches the picker.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zvonok.sip.dialog_info import DialogState, parse_dialog_info

from .conftest import RawSipClient, _digest_params, digest_authorization
from .test_calls_sipp import Pbx, assert_all_ok, calls, finish_callee, harness, place_calls, start_callee

pytestmark = pytest.mark.integration

WATCHER, B, CALLER = "6401", "6402", "6403"
RINGING = "6404"  # rings until the watcher's BLF key picks its call up by Replaces
ELSEWHERE = "6411"  # an extension of another company only


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pbx]:
    if harness.shutil.which("sipp") is None:
        pytest.fail("SIPp (Debian sip-tester) is not installed: `make test` installs it")
    tmp = tmp_path_factory.mktemp("blf_sipp")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(
        data_dir,
        domain=f"blf-{secrets.token_hex(3)}.test",
        numbers=[WATCHER, B, CALLER, RINGING],
        database_url=database_url,
    )
    other = harness.seed(
        data_dir,
        domain=f"blf-other-{secrets.token_hex(3)}.test",
        numbers=[ELSEWHERE],
        name="Other",
        database_url=database_url,
    )
    server = harness.ZvonokServer(
        data_dir=data_dir,
        database_url=database_url,
        env={"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "30", "ZVONOK_INVITE_RATE_LIMIT": "1000"},
    )
    server.start()
    try:
        pbx = Pbx(server=server, seeded=seeded, workdir=tmp / "sipp")
        pbx.other_domain = other.domain  # type: ignore[attr-defined]
        yield pbx
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def wait_for_text(path: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def test_blf_key_sees_ringing_answered_and_hung_up(pbx: Pbx) -> None:
    messages = pbx.workdir / "blf_messages.log"
    pbx.workdir.mkdir(parents=True, exist_ok=True)
    messages.unlink(missing_ok=True)
    callee = start_callee(pbx, B, "call_uas.xml")
    row = calls.caller_row(WATCHER, harness.password_for(WATCHER), pbx.domain, B)
    key = calls.SippProcess(
        "blf_subscriber.xml",
        pbx.target,
        workdir=pbx.workdir,
        name=f"blf_{WATCHER}",
        rows=[row],
        calls=1,
        timeout=40,
        auth_uri=f"sip:{B}@{pbx.domain}",
        extra=["-trace_msg", "-message_file", str(messages)],
    ).start()
    try:
        # subscribed: the first (idle) NOTIFY has arrived before the call starts
        assert wait_for_text(messages, "Subscription-State: active", 15), messages.read_text(errors="replace")
        result = place_calls(pbx, CALLER, B, "call_uac.xml", 1, rate=1, timeout=30)
        key_result = key.wait(timeout=40)
        callee_result = finish_callee(callee, 1)
    finally:
        key.quit()
        callee.kill()
    assert_all_ok(result, 1)
    assert_all_ok(callee_result, 1)
    assert_all_ok(key_result, 1)  # every NOTIFY matched its scenario step and its body checks
    log = messages.read_text(errors="replace")
    docs = [parse_dialog_info(m.encode()) for m in re.findall(r"<\?xml.*?</dialog-info>", log, re.S)]
    assert [d.version for d in docs] == [0, 1, 2, 3, 4, 5]
    assert all(d.entity == f"sip:{B}@{pbx.domain}" and d.full for d in docs)
    states = [[(x.state, x.direction) for x in d.dialogs] for d in docs]
    assert states[:5] == [
        [],
        [(DialogState.TRYING, "recipient")],
        [(DialogState.EARLY, "recipient")],
        [(DialogState.CONFIRMED, "recipient")],
        [(DialogState.TERMINATED, "recipient")],
    ]
    early = docs[2].dialogs[0]
    assert early.remote_target == f"sip:**{B}@{pbx.domain}"  # the key picks the call up with **B
    assert (
        early.remote_identity == f"sip:{CALLER}@{pbx.domain}"
        and early.local_identity == f"sip:{B}@{pbx.domain}"
    )
    assert docs[3].dialogs[0].remote_target is None  # no pickup once answered
    assert "Subscription-State: terminated" in log


def subscribe(
    client: RawSipClient, watched: str, domain: str, *, auth: str | None = None, cseq: int = 1
) -> bytes:
    ruri = f"sip:{watched}@{domain}"
    headers = [
        ("Event", "dialog"),
        ("Expires", "60"),
        ("Contact", f"<sip:{WATCHER}@127.0.0.1:{client.port}>"),
    ]
    data = client.request(
        "SUBSCRIBE",
        ruri,
        WATCHER,
        domain,
        cseq=cseq,
        new_call=cseq == 1,
        headers=[*headers, *([("Authorization", auth)] if auth else [])],
    )
    return data.replace(f"To: <sip:{WATCHER}@{domain}>".encode(), f"To: <{ruri}>".encode())


def attempt(client: RawSipClient, watched: str, domain: str, password: str) -> tuple[int, int | None, str]:
    """SUBSCRIBE, answer the MD5 challenge: (first status, final status, the final reason)."""
    first = client.exchange(subscribe(client, watched, domain))
    assert first is not None
    if first.status != 401:
        return first.status, None, ""
    challenge = next(
        _digest_params(v)
        for v in first.get_all("WWW-Authenticate")
        if _digest_params(v).get("algorithm", "MD5").upper() == "MD5"
    )
    auth = digest_authorization(challenge, WATCHER, password, "SUBSCRIBE", f"sip:{watched}@{domain}")
    final = client.exchange(subscribe(client, watched, domain, auth=auth, cseq=2))
    assert final is not None
    return first.status, final.status, final.raw.split(b"\r\n", 1)[0].decode()


def test_another_companys_extension_is_not_found_and_never_watched(pbx: Pbx) -> None:
    client = RawSipClient(pbx.server.sip_port)
    try:
        password = harness.password_for(WATCHER)
        # in our own domain: another company's number and a number nobody has look the same (404)
        elsewhere = attempt(client, ELSEWHERE, pbx.domain, password)
        nobody = attempt(client, "6499", pbx.domain, password)
        assert elsewhere == nobody == (401, 404, "SIP/2.0 404 Not Found"), (elsewhere, nobody)
        # in the other company's domain our credentials are not theirs: refused, never subscribed
        first, final, _ = attempt(client, ELSEWHERE, pbx.other_domain, password)  # type: ignore[attr-defined]
        assert first == 401 and final in (401, 403), final
        # and our own colleague is watched (200)
        assert attempt(client, B, pbx.domain, password)[:2] == (401, 200)
    finally:
        client.close()


def test_blf_key_picks_the_ringing_call_up_with_replaces(pbx: Pbx) -> None:
    messages = pbx.workdir / "blf_pickup_messages.log"
    pbx.workdir.mkdir(parents=True, exist_ok=True)
    messages.unlink(missing_ok=True)
    ringing = start_callee(pbx, RINGING, "call_uas_ring.xml")  # rings until cancelled
    row = calls.caller_row(WATCHER, harness.password_for(WATCHER), pbx.domain, RINGING)
    key = calls.SippProcess(
        "blf_pickup_subscriber.xml",
        pbx.target,
        workdir=pbx.workdir,
        name=f"blf_pickup_{WATCHER}",
        rows=[row],
        calls=1,
        timeout=60,
        auth_uri=f"sip:{RINGING}@{pbx.domain}",
        extra=["-trace_msg", "-message_file", str(messages)],
    ).start()
    caller: dict[str, object] = {}
    try:
        assert wait_for_text(messages, "Subscription-State: active", 15), messages.read_text(errors="replace")
        # the caller: INVITE, rings, is answered by the picker, talks 2 s, hangs up (BYE)
        thread = threading.Thread(
            target=lambda: caller.update(
                result=place_calls(pbx, CALLER, RINGING, "call_uac.xml", 1, rate=1, timeout=50, hold_ms=2000)
            )
        )
        thread.start()
        assert wait_for_text(messages, "early</state>", 20), messages.read_text(errors="replace")
        log = messages.read_text(errors="replace")
        docs = [parse_dialog_info(m.encode()) for m in re.findall(r"<\?xml.*?</dialog-info>", log, re.S)]
        early = next(d for doc in docs for d in doc.dialogs if d.state is DialogState.EARLY)
        assert early.call_id and early.local_tag and early.remote_tag, early
        assert early.direction == "recipient" and early.remote_identity == f"sip:{CALLER}@{pbx.domain}"
        assert early.local_identity == f"sip:{RINGING}@{pbx.domain}"
        # the key's INVITE with Replaces: to-tag = the ringing phone's tag (local-tag), from-tag = ours
        pick_row = [*row, early.call_id, early.local_tag, early.remote_tag]
        picked = harness.run_sipp(
            "blf_pickup_uac.xml", pbx.target, workdir=pbx.workdir, rows=[pick_row], rate=1, timeout=40,
            auth_uri=f"sip:{RINGING}@{pbx.domain}", name=f"picker_{WATCHER}",
            extra=["-mi", harness.LOOPBACK, "-mp", str(calls.free_media_port())],
        )
        thread.join(timeout=60)
        key_result = key.wait(timeout=40)
        ringing_result = finish_callee(ringing, 1)
    finally:
        key.quit()
        ringing.kill()
    assert_all_ok(picked, 1)  # 200 to the INVITE with Replaces, then the caller's BYE
    assert_all_ok(caller["result"], 1)  # the caller was answered (by the picker) and hung up
    assert_all_ok(ringing_result, 1)  # the ringing phone got our CANCEL
    assert_all_ok(key_result, 1)  # idle, trying, early (with the dialog ids), terminated
    cdr = pbx.cdrs(CALLER, 2)[-1]  # (the first test's call is the other)
    assert cdr["callee_number"] == WATCHER and cdr["disposition"] == "answered", cdr

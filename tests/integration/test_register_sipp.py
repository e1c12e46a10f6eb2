"""Registration against the real server: SIPp as the phones, the REST API as the witness.

Each test uses its own extension numbers on the shared server (see conftest), so the order of the
tests does not matter. The brute-force test has a server of its own: its ban covers 127.0.0.1.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from .conftest import (
    CLI_USER,
    RAW_USERS,
    RESTART_USERS,
    TCP_USERS,
    UDP_USERS,
    UNREGISTER_USERS,
    Pbx,
    RawSipClient,
    SipResponse,
    _digest_params,
    digest_authorization,
    harness,
)

pytestmark = pytest.mark.integration

USER_AGENT = "SIPp-zvonok/3.6"  # what the scenarios send


def _user(item: dict[str, object]) -> str:
    return str(item["aor"]).removeprefix("sip:").split("@", 1)[0]


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.1) -> bool:
    """Poll the REST API until ``predicate()`` holds (state changes are not synchronous with SIP)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def _assert_all_ok(result: harness.SippResult, calls: int) -> None:
    assert result.returncode == 0, result.describe()
    assert result.successful == calls, result.describe()
    assert result.failed == 0, result.describe()


def test_sipp_registers_200_extensions_over_udp(pbx: Pbx) -> None:
    port = harness.free_sip_port()
    result = pbx.sipp("register.xml", pbx.rows(UDP_USERS), local_port=port, rate=200)
    _assert_all_ok(result, len(UDP_USERS))

    found = pbx.registrations_of(UDP_USERS)
    assert sorted(found) == sorted(UDP_USERS)
    for number, items in found.items():
        assert len(items) == 1, items
        item = items[0]
        assert item["aor"].removeprefix("sip:") == f"{number}@{pbx.domain}"
        assert item["contact"] == f"sip:{number}@127.0.0.1:{port};transport=UDP"
        assert item["user_agent"] == USER_AGENT
        assert "127.0.0.1" in item["source"] and str(port) in item["source"], item
        assert 3500 < item["expires_in"] <= 3600, item
        assert isinstance(item["extension_id"], int)
    assert len({items[0]["extension_id"] for items in found.values()}) == len(UDP_USERS)


def test_sipp_registers_over_tcp(pbx: Pbx) -> None:
    port = harness.free_sip_port()
    result = pbx.sipp("register.xml", pbx.rows(TCP_USERS), transport="t1", local_port=port, rate=50)
    _assert_all_ok(result, len(TCP_USERS))

    found = pbx.registrations_of(TCP_USERS)
    assert sorted(found) == sorted(TCP_USERS)
    for number, items in found.items():
        assert [i["contact"] for i in items] == [f"sip:{number}@127.0.0.1:{port};transport=TCP"]
        assert items[0]["user_agent"] == USER_AGENT
        assert items[0]["source"].lower().startswith("tcp"), items[0]


def test_unregister_with_expires_zero(pbx: Pbx) -> None:
    result = pbx.sipp("unregister.xml", pbx.rows(UNREGISTER_USERS), rate=50)
    _assert_all_ok(result, len(UNREGISTER_USERS))
    assert _wait_for(lambda: pbx.registrations_of(UNREGISTER_USERS) == {}), pbx.registrations_of(UNREGISTER_USERS)


def test_bad_credentials_get_403_from_sipp(pbx: Pbx) -> None:
    rows = [
        harness.sipp_row(CLI_USER[0], "not-the-password", pbx.domain),  # wrong password
        harness.sipp_row("98765", "whatever-pass", pbx.domain),  # unknown user
        harness.sipp_row(CLI_USER[0], CLI_USER[2], "no-such-company.test"),  # unknown domain
    ]
    # -auth_uri must follow the Request-URI, so the unknown domain runs on its own
    result = pbx.sipp("register_forbidden.xml", rows[:2], rate=20)
    _assert_all_ok(result, 2)
    other = harness.run_sipp("register_forbidden.xml", pbx.target, workdir=pbx.workdir, rows=rows[2:],
                             rate=20, timeout=20, auth_uri="sip:no-such-company.test", name="forbidden_domain")
    _assert_all_ok(other, 1)
    assert pbx.registrations_of([CLI_USER[0], "98765"]) == {}


def _normalized(response: SipResponse, *, user: str, domain: str, client: RawSipClient) -> list[tuple[str, str]]:
    """The response with what echoes the request (user, domain, Call-ID, branch, tags) blanked out."""
    lines = [("status", f"{response.status} {response.reason}")]
    for name, value in response.headers:
        value = value.replace(client.call_id, "<call-id>").replace(client.branch, "<branch>")
        value = value.replace(client.from_tag, "<from-tag>")
        value = re.sub(r";tag=[^;>\s,]+", ";tag=<tag>", value) if name.lower() in ("to", "t") else value
        value = value.replace(f"{user}@", "<user>@").replace(domain, "<domain>")
        lines.append((name, value))
    return lines


def test_wrong_password_and_unknown_user_get_identical_403(pbx: Pbx, raw_client: RawSipClient) -> None:
    number = CLI_USER[0]
    attempts = [(number, pbx.domain, "wrong-password"), ("98764", pbx.domain, "some-password"),
                (number, "unknown-company.test", CLI_USER[2])]
    seen = []
    for user, domain, password in attempts:
        challenge, final = raw_client.register(user, domain, password)
        assert challenge is not None and challenge.status == 401, challenge
        md5_first = challenge.get_all("WWW-Authenticate")[0]
        assert "algorithm=MD5" in md5_first.replace('"', ""), challenge.headers
        assert final is not None, f"no answer to the authenticated REGISTER of {user}@{domain}"
        assert final.status == 403, final.raw.decode(errors="replace")
        seen.append(_normalized(final, user=user, domain=domain, client=raw_client))
    assert seen[0] == seen[1], "wrong password and unknown user must be indistinguishable"
    assert seen[0] == seen[2], "wrong password and unknown domain must be indistinguishable"


def test_brute_force_source_is_ignored(strict_pbx: Pbx) -> None:
    client = RawSipClient(strict_pbx.sip_port)
    try:
        answered = []
        for _ in range(7):  # the limit is 5: the 6th failure starts the ban
            _, final = client.register("201", strict_pbx.domain, "guessed-wrong", timeout=2.0)
            answered.append(final.status if final is not None else None)
        assert answered[:5] == [403] * 5, answered
        # banned: nothing answers, not even a first REGISTER or the right password
        assert client.exchange(client.request("REGISTER", f"sip:{strict_pbx.domain}", "201", strict_pbx.domain,
                                              headers=[("Contact", f"<sip:201@127.0.0.1:{client.port}>")]),
                               timeout=2.0) is None
        challenge, final = client.register("202", strict_pbx.domain, harness.password_for("202"), timeout=2.0)
        assert challenge is None and final is None
    finally:
        client.close()
    assert strict_pbx.registrations_of(["201", "202"]) == {}


def test_interval_too_brief_gets_423_with_min_expires(pbx: Pbx, raw_client: RawSipClient) -> None:
    number = RAW_USERS[0]
    challenge, final = raw_client.register(number, pbx.domain, pbx.extensions[number], expires=30)
    assert challenge is not None and challenge.status == 401
    assert final is not None and final.status == 423, final
    assert final.get("Min-Expires") == "60", final.headers
    assert pbx.registrations_of([number]) == {}

    _, final = raw_client.register(number, pbx.domain, pbx.extensions[number], expires=60)
    assert final is not None and final.status == 200, final
    contacts = final.get_all("Contact")
    assert len(contacts) == 1 and f"sip:{number}@127.0.0.1:{raw_client.port}" in contacts[0], contacts
    assert re.search(r"expires=(5[0-9]|60)\b", contacts[0]), contacts


def test_options_gets_200_with_allow(pbx: Pbx, raw_client: RawSipClient) -> None:
    response = raw_client.exchange(raw_client.request("OPTIONS", f"sip:{pbx.domain}", "options", pbx.domain))
    assert response is not None and response.status == 200, response
    allow = {m.strip().upper() for m in (response.get("Allow") or "").split(",")}
    assert {"REGISTER", "OPTIONS"} <= allow, response.headers


def _authorized_register(client: RawSipClient, pbx: Pbx, number: str, *, qop: bool = True) -> bytes:
    """A REGISTER of ``number`` that answers a fresh challenge (with qop=auth, or in the RFC 2069 form)."""
    ruri = f"sip:{pbx.domain}"
    contact = ("Contact", f"<sip:{number}@127.0.0.1:{client.port}>")
    first = client.exchange(client.request("REGISTER", ruri, number, pbx.domain, headers=[contact]))
    assert first is not None and first.status == 401, first
    challenge = _digest_params(first.get_all("WWW-Authenticate")[0])
    if not qop:
        challenge.pop("qop", None)
    auth = digest_authorization(challenge, number, pbx.extensions[number], "REGISTER", ruri)
    return client.request("REGISTER", ruri, number, pbx.domain, cseq=2, new_call=False,
                          headers=[contact, ("Authorization", auth)])


def test_a_digest_without_qop_is_refused(pbx: Pbx, raw_client: RawSipClient) -> None:
    # issue 8: without qop there is no nonce-count, and the request replays from anywhere
    number = RAW_USERS[2]
    final = raw_client.exchange(_authorized_register(raw_client, pbx, number, qop=False))
    assert final is not None and final.status == 403, final
    assert pbx.registrations_of([number]) == {}


def test_registrations_survive_a_restart(pbx: Pbx, raw_client: RawSipClient) -> None:
    port = harness.free_sip_port()
    result = pbx.sipp("register.xml", pbx.rows(RESTART_USERS), local_port=port, rate=50)
    _assert_all_ok(result, len(RESTART_USERS))
    before = pbx.registrations_of(RESTART_USERS)
    assert sorted(before) == sorted(RESTART_USERS)
    captured = _authorized_register(raw_client, pbx, RAW_USERS[3])
    first = raw_client.exchange(captured)
    assert first is not None and first.status == 200, first

    assert pbx.restart() == 0, pbx.server.log_tail()

    # issue 8: a REGISTER captured before the restart must not replay after it (the nonce-counts that
    # refused it are gone with the old process): the replayer gets a fresh challenge, useless to it
    # (the digest covers neither CSeq nor Contact: a replay can move the binding to the attacker)
    attacker = RawSipClient(pbx.sip_port)
    try:
        hijack = captured.replace(b"CSeq: 2 ", b"CSeq: 3 ").replace(
            f"127.0.0.1:{raw_client.port}>".encode(), f"127.0.0.1:{attacker.port}>".encode())
        replayed = attacker.exchange(hijack)
    finally:
        attacker.close()
    assert replayed is not None and replayed.status == 401, replayed
    assert "stale=true" in replayed.get_all("WWW-Authenticate")[0].replace('"', "").lower()
    bound = pbx.registrations_of([RAW_USERS[3]])[RAW_USERS[3]]
    assert [str(b["contact"]) for b in bound] == [f"sip:{RAW_USERS[3]}@127.0.0.1:{raw_client.port}"]

    after = pbx.registrations_of(RESTART_USERS)
    assert sorted(after) == sorted(RESTART_USERS)
    for number in RESTART_USERS:
        assert [i["contact"] for i in after[number]] == [i["contact"] for i in before[number]]
        assert after[number][0]["user_agent"] == USER_AGENT
        assert 0 < after[number][0]["expires_in"] <= 3600
    # the restarted server keeps working
    again = pbx.sipp("register.xml", pbx.rows(RESTART_USERS[:2]), local_port=port, rate=50)
    _assert_all_ok(again, 2)


def test_an_extension_added_through_the_api_registers_at_once(pbx: Pbx, raw_client: RawSipClient) -> None:
    # issue 8: the server answers unknown names from its preloaded table; a new extension must not stay
    # unknown to it until the next full reload
    number, password = "5999", "a-new-phone-password"
    _, refused = raw_client.register(number, pbx.domain, password)
    assert refused is not None and refused.status == 403, refused
    created = harness.http_json(f"{pbx.http_url}/api/v1/tenants/{pbx.tenant_id}/extensions", pbx.token,
                                method="POST", body={"number": number, "display_name": "New",
                                                     "sip_password": password})
    assert created["number"] == number, created
    _, final = raw_client.register(number, pbx.domain, password)
    assert final is not None and final.status == 200, final
    assert number in pbx.registrations_of([number])


def _registers_within(client: RawSipClient, pbx: Pbx, number: str, password: str, timeout: float = 15.0) -> int:
    """Poll a REGISTER (every 0.5 s: few failures against the account's throttle) until it is not refused;
    the last final status."""
    deadline = time.monotonic() + timeout
    while True:
        _, final = client.register(number, pbx.domain, password)
        assert final is not None, "no final response"
        if final.status == 200 or time.monotonic() > deadline:
            return final.status
        time.sleep(0.5)


def test_a_password_changed_by_another_process_is_accepted_within_seconds(pbx: Pbx, raw_client: RawSipClient) -> None:
    # issue 8: the CLI is another process; the server's credential table (read again only every 600 s)
    # learns of its changes through the change feed: a new extension, then a new password
    number, old, new = "5998", "first-password-5998", "second-password-5998"
    pbx.server.cli("extension", "add", "--tenant", pbx.domain, "--number", number, "--name", "Other process",
                   "--password", old)
    assert _registers_within(raw_client, pbx, number, old) == 200
    pbx.server.cli("extension", "passwd", "--tenant", pbx.domain, "--number", number, "--password", new)
    assert _registers_within(raw_client, pbx, number, new) == 200
    _, refused = raw_client.register(number, pbx.domain, old)
    assert refused is not None and refused.status == 403, refused

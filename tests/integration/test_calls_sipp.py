"""Calls through the B2BUA driven by SIPp on both sides: a registered SIPp callee, a SIPp caller.

The callee's port is registered first (``register.xml`` from the very port the callee then listens on:
the server sends INVITEs to a REGISTER's source); the callee then runs in server mode. The caller is
challenged (407, MD5) and retries with ``Proxy-Authorization`` (``-auth_uri`` = its Request-URI).

What the media test proves: SIPp counts no RTP it receives, except the callee's ``-rtp_echo``
("Total echo RTP pckts", read with SIGUSR2). So the callee's echo count shows the caller's g711a.pcap
crossed the relay caller -> callee; when the test runs as root, an ``AF_PACKET`` counter on ``lo`` also
counts the datagrams delivered to the caller's and the callee's media ports, i.e. both directions
(callee -> caller is the echo coming back through the relay). Loss and jitter are not measured here.
The CDRs through the REST API are the server's own account of each call.
"""

from __future__ import annotations

import importlib.util
import secrets
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]  # loaded by conftest.py (bench/_common.py)


def _load_calls() -> Any:
    name = "zvonok_bench_calls"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, harness.ROOT / "bench" / "_calls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


calls: Any = _load_calls()

# callee, caller per test: a number is registered by one test only, so forks never reach another's SIPp
MEDIA = ("6001", "6002")
TRANSCODED = ("6003", "6004")
CANCEL = ("6005", "6006")
CALLEE_BYE = ("6007", "6008")
BUSY = ("6009", "6010")
SESSION_TIMER = ("6011", "6012")
DELAYED_OFFER = ("6013", "6014")
WE_REFRESH = ("6015", "6016")
NO_REFRESH = ("6017", "6018")
MANY = ("6019", "6020")
NUMBERS = [n for pair in (MEDIA, TRANSCODED, CANCEL, CALLEE_BYE, BUSY, SESSION_TIMER, DELAYED_OFFER, WE_REFRESH,
                          NO_REFRESH, MANY) for n in pair]
PCAP_PACKETS = 236  # g711a.pcap: 7.05 s of PCMA in 30 ms packets (checked below)


@dataclass
class Pbx:
    server: Any  # harness.ZvonokServer
    seeded: Any  # harness.Seeded
    workdir: Path

    @property
    def target(self) -> str:
        return f"{harness.LOOPBACK}:{self.server.sip_port}"

    @property
    def domain(self) -> str:
        return str(self.seeded.domain)

    def cdrs(self, caller: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """CDRs of calls placed by ``caller``, oldest first, once ``count`` exist (they are written async)."""
        url = (f"{self.server.http_url}/api/v1/tenants/{self.seeded.tenant_id}/cdrs"
               f"?extension={caller}&limit=100")
        deadline = time.monotonic() + timeout
        while True:
            items = [c for c in harness.http_json(url, self.seeded.token)["items"] if c["caller_number"] == caller]
            if len(items) >= count or time.monotonic() > deadline:
                return sorted(items, key=lambda c: c["started_at"])
            time.sleep(0.2)


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pbx]:
    if harness.shutil.which("sipp") is None or not calls.G711A_PCAP.exists():
        pytest.fail("SIPp (Debian sip-tester) with its pcap files is not installed: `make test` installs it")
    tmp = tmp_path_factory.mktemp("calls_sipp")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(data_dir, domain=f"sipp-calls-{secrets.token_hex(3)}.test", numbers=NUMBERS,
                          database_url=database_url)
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url,
                                  env={"ZVONOK_CALL_NO_ANSWER_TIMEOUT": "20", "ZVONOK_SESSION_MIN_SE": "5",
                                       # 50 calls/s from SIPp's one address (two INVITEs each: challenged)
                                       "ZVONOK_INVITE_RATE_LIMIT": "1000"})
    server.start()
    try:
        yield Pbx(server=server, seeded=seeded, workdir=tmp / "sipp")
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def start_callee(pbx: Pbx, number: str, scenario: str, *, codec: str = "PCMA", rtp_echo: bool = False,
                 timeout: float = 40) -> Any:
    """Register ``number`` from a free port, then run the SIPp callee ``scenario`` on that port."""
    port = harness.free_sip_port()
    reg = calls.register_port(pbx.target, workdir=pbx.workdir, number=number, domain=pbx.domain, port=port,
                              name=f"register_{number}")
    assert (reg.returncode, reg.successful, reg.failed) == (0, 1, 0), reg.describe()
    callee = calls.SippProcess(scenario, None, workdir=pbx.workdir, name=f"callee_{number}", local_port=port,
                               timeout=timeout, rtp_echo=rtp_echo,
                               keys={"codec": calls.CODECS[codec], "codec_name": codec}, extra=["-s", number])
    return callee.start()


def place_calls(pbx: Pbx, caller: str, callee: str, scenario: str, count: int, *, rate: float = 10,
                timeout: float = 30, media_port: int | None = None, hold_ms: int = 1000) -> Any:
    """``count`` calls from ``caller`` to ``callee`` with the SIPp caller ``scenario``; a ``SippResult``."""
    rows = [calls.caller_row(caller, harness.password_for(caller), pbx.domain, callee)] * count
    extra = ["-mi", harness.LOOPBACK, "-mp", str(media_port or calls.free_media_port()), "-d", str(hold_ms)]
    return harness.run_sipp(scenario, pbx.target, workdir=pbx.workdir, rows=rows, rate=rate, timeout=timeout,
                            auth_uri=f"sip:{callee}@{pbx.domain}", extra=extra, name=f"caller_{caller}")


def finish_callee(callee: Any, count: int) -> Any:
    """Let the callee see its last call end, then stop it; its ``SippResult``."""
    callee.wait_for("SuccessfulCall(C)", count, timeout=10)
    return callee.stop()


def assert_all_ok(result: Any, count: int) -> None:
    assert result.failed == 0, result.describe()
    assert result.successful == count, result.describe()
    assert result.returncode == 0, result.describe()


def test_pcap_holds_what_the_media_test_expects() -> None:
    assert calls.pcap_packets() == PCAP_PACKETS


@pytest.mark.parametrize(("pair", "callee_codec"), [(MEDIA, "PCMA"), (TRANSCODED, "PCMU")],
                         ids=["relay-pcma", "transcode-pcma-pcmu"])
def test_answered_calls_relay_rtp_both_ways(pbx: Pbx, pair: tuple[str, str], callee_codec: str) -> None:
    """20 calls, each playing g711a.pcap (PCMA) into the call; the callee echoes what reaches it."""
    callee_number, caller_number = pair
    count = 20
    callee = start_callee(pbx, callee_number, "call_uas.xml", codec=callee_codec, rtp_echo=True)
    caller_media = calls.free_media_port()
    sniff = calls.LoopbackRtpCounter([caller_media, callee.media_port]) if calls.LoopbackRtpCounter.available() \
        else None
    try:
        if sniff is not None:
            sniff.__enter__()
        result = place_calls(pbx, caller_number, callee_number, "call_uac.xml", count, rate=10,
                             media_port=caller_media, hold_ms=8000)
        assert callee.wait_for("SuccessfulCall(C)", count, timeout=10), callee.stats()
        callee.dump_screens()
        callee_result = callee.stop()
    finally:
        callee.kill()
        if sniff is not None:
            sniff.__exit__(None, None, None)
    assert_all_ok(result, count)
    assert_all_ok(callee_result, count)

    sent = count * PCAP_PACKETS
    echoed = calls.echoed_packets(callee_result.stdout)
    # caller -> relay -> callee: everything the callee's -rtp_echo got (loopback, light load: no loss)
    assert echoed is not None, "the callee's screen has no RTP echo counter"
    assert 0.98 * sent <= echoed <= sent, (echoed, sent)
    if sniff is not None:
        to_callee = sniff.to_port(callee.media_port)
        to_caller = sniff.to_port(caller_media)
        assert 0.98 * sent <= to_callee <= sent, (to_callee, sent)
        # callee -> relay -> caller: the echo came back (what arrives after the caller's BYE is dropped)
        assert 0.95 * echoed <= to_caller <= echoed, (to_caller, echoed)
        # the relay sent from its own ports, one per leg: never the peers' addresses (topology hiding)
        sources = {s for (s, d) in sniff.counts if d in (caller_media, callee.media_port)}
        assert caller_media not in sources and callee.media_port not in sources, sources
        assert len(sources) == 2 * count, sources

    cdrs = pbx.cdrs(caller_number, count)
    assert len(cdrs) == count, cdrs
    for cdr in cdrs:
        assert (cdr["callee_number"], cdr["disposition"], cdr["hangup_side"]) == (callee_number, "answered",
                                                                                   "caller"), cdr
        assert cdr["billsec"] >= 7, cdr  # the caller holds 8 s after the answer
        assert cdr["internal"] is True


def test_cancel_before_answer(pbx: Pbx) -> None:
    callee_number, caller_number = CANCEL
    count = 5
    callee = start_callee(pbx, callee_number, "call_uas_ring.xml")
    try:
        result = place_calls(pbx, caller_number, callee_number, "call_uac_cancel.xml", count, rate=5)
        callee_result = finish_callee(callee, count)
    finally:
        callee.kill()
    assert_all_ok(result, count)
    assert_all_ok(callee_result, count)  # every fork got our CANCEL, answered 487 and got the ACK
    cdrs = pbx.cdrs(caller_number, count)
    assert [(c["disposition"], c["hangup_side"], c["billsec"]) for c in cdrs] == [("cancelled", "caller", 0)] * count


def test_callee_hangs_up(pbx: Pbx) -> None:
    callee_number, caller_number = CALLEE_BYE
    count = 5
    callee = start_callee(pbx, callee_number, "call_uas_bye.xml")
    try:
        result = place_calls(pbx, caller_number, callee_number, "call_uac_callee_bye.xml", count, rate=5)
        callee_result = finish_callee(callee, count)
    finally:
        callee.kill()
    assert_all_ok(result, count)  # the caller got our BYE
    assert_all_ok(callee_result, count)  # the callee's BYE got its 200
    cdrs = pbx.cdrs(caller_number, count)
    assert [(c["disposition"], c["hangup_side"]) for c in cdrs] == [("answered", "callee")] * count
    assert all(c["billsec"] >= 1 for c in cdrs), cdrs


def test_busy_callee(pbx: Pbx) -> None:
    callee_number, caller_number = BUSY
    count = 5
    callee = start_callee(pbx, callee_number, "call_uas_busy.xml")
    try:
        result = place_calls(pbx, caller_number, callee_number, "call_uac_busy.xml", count, rate=5)
        callee_result = finish_callee(callee, count)
    finally:
        callee.kill()
    assert_all_ok(result, count)  # the caller got 486
    assert_all_ok(callee_result, count)  # our ACK of the callee's 486 arrived
    cdrs = pbx.cdrs(caller_number, count)
    assert [(c["disposition"], c["sip_status"], c["billsec"]) for c in cdrs] == [("busy", 486, 0)] * count


def test_session_timer_ends_a_call_that_is_not_refreshed(pbx: Pbx) -> None:
    """RFC 4028: the caller asks for a 10 s session it refreshes itself, then never does; our 200 carries
    Session-Expires and Require: timer (the scenario checks both), and we end the call with BYE."""
    callee_number, caller_number = SESSION_TIMER
    callee = start_callee(pbx, callee_number, "call_uas_answer.xml")
    try:
        result = place_calls(pbx, caller_number, callee_number, "call_uac_session_timer.xml", 1, rate=1,
                             timeout=40)
        callee_result = finish_callee(callee, 1)
    finally:
        callee.kill()
    assert_all_ok(result, 1)  # got the 200 with the timer headers, then our BYE
    assert_all_ok(callee_result, 1)  # the callee got our BYE too
    (cdr,) = pbx.cdrs(caller_number, 1)
    assert (cdr["disposition"], cdr["hangup_side"], cdr["cause"]) == ("answered", "system", "session_timeout")
    assert 5 <= cdr["billsec"] <= 10, cdr  # 10 s less the RFC 4028 margin of a third


def test_delayed_offer(pbx: Pbx) -> None:
    """INVITEs without SDP: our 200 carries the offer (the scenario checks PCMA is in it), the caller's ACK
    the answer; the caller's RTP then crosses the relay to the callee, which echoes it."""
    callee_number, caller_number = DELAYED_OFFER
    count = 3
    callee = start_callee(pbx, callee_number, "call_uas.xml", codec="PCMA", rtp_echo=True)
    try:
        result = place_calls(pbx, caller_number, callee_number, "call_uac_delayed_offer.xml", count, rate=3,
                             hold_ms=8000)
        assert callee.wait_for("SuccessfulCall(C)", count, timeout=10), callee.stats()
        callee.dump_screens()
        callee_result = callee.stop()
    finally:
        callee.kill()
    assert_all_ok(result, count)
    assert_all_ok(callee_result, count)
    echoed = calls.echoed_packets(callee_result.stdout)
    assert echoed is not None and echoed >= 0.98 * count * PCAP_PACKETS, echoed
    cdrs = pbx.cdrs(caller_number, count)
    assert [(c["disposition"], c["hangup_side"]) for c in cdrs] == [("answered", "caller")] * count


def test_session_timer_we_refresh_for_the_callee(pbx: Pbx) -> None:
    """The callee's 200 makes us the refresher of a 6 s session: we re-INVITE it with Session-Expires at
    half the interval (the callee scenario fails without it), and the call goes on until the caller's BYE."""
    callee_number, caller_number = WE_REFRESH
    callee = start_callee(pbx, callee_number, "call_uas_timer_we_refresh.xml")
    try:
        result = place_calls(pbx, caller_number, callee_number, "call_uac.xml", 1, rate=1, hold_ms=4500)
        callee_result = finish_callee(callee, 1)
    finally:
        callee.kill()
    assert_all_ok(result, 1)
    assert_all_ok(callee_result, 1)
    (cdr,) = pbx.cdrs(caller_number, 1)
    assert (cdr["disposition"], cdr["hangup_side"]) == ("answered", "caller"), cdr


def test_session_timer_ends_a_call_the_callee_does_not_refresh(pbx: Pbx) -> None:
    """The callee asks for a 6 s session it refreshes itself and never does: we end the call (BYE to both)."""
    callee_number, caller_number = NO_REFRESH
    callee = start_callee(pbx, callee_number, "call_uas_timer_no_refresh.xml")
    try:
        result = place_calls(pbx, caller_number, callee_number, "call_uac_callee_bye.xml", 1, rate=1, timeout=40)
        callee_result = finish_callee(callee, 1)
    finally:
        callee.kill()
    assert_all_ok(result, 1)  # the caller got our BYE
    assert_all_ok(callee_result, 1)  # and so did the callee
    (cdr,) = pbx.cdrs(caller_number, 1)
    assert (cdr["disposition"], cdr["hangup_side"], cdr["cause"]) == ("answered", "system", "session_timeout")
    assert 2 <= cdr["billsec"] <= 6, cdr


# what a call holds while it runs; all of it is let go when the calls end (issue 8: memory grew with every call)
PER_CALL = ("zvonok_calls_active", "zvonok_sip_dialogs", "zvonok_sip_invites", "zvonok_sip_transactions",
            "zvonok_client_handlers", "zvonok_media_endpoints", "zvonok_call_objects")


def gauges(pbx: Pbx) -> dict[str, float]:
    with urllib.request.urlopen(f"{pbx.server.http_url}/metrics", timeout=10) as resp:  # noqa: S310
        lines = resp.read().decode().splitlines()
    found = {line.split()[0]: float(line.split()[1]) for line in lines if line.split(" ")[0] in PER_CALL}
    assert set(found) == set(PER_CALL), found
    return found


def test_finished_calls_leave_nothing_behind(pbx: Pbx) -> None:
    """200 calls, then every per-call table empties and no Call object stays in memory: a call caught in a
    reference cycle would wait for a full collection (rare: the GC is tuned for throughput), one held by a
    forgotten timer or callback forever. The SIP transactions end by their timers (Timer D/J: 32 s on UDP)."""
    callee_number, caller_number = MANY
    count = 200
    callee = start_callee(pbx, callee_number, "call_uas_answer.xml", timeout=120)
    try:
        result = place_calls(pbx, caller_number, callee_number, "call_uac_short.xml", count, rate=50, timeout=60,
                             hold_ms=500)
        callee.wait_for("SuccessfulCall(C)", count, timeout=20)
    finally:
        callee.stop()
        callee.kill()
    assert_all_ok(result, count)
    during = gauges(pbx)
    deadline = time.monotonic() + 90
    while any(gauges(pbx).values()):
        assert time.monotonic() < deadline, (during, gauges(pbx))
        time.sleep(1)

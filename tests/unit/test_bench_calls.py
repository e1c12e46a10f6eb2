"""The pure part of bench/calls.py: which set-up step is a target's best."""

from __future__ import annotations

from typing import Any

import pytest
from bench_script import load

calls: Any = load("calls")


def step(rate: int, ok: int, failed: int = 0, rc: int = 0) -> Any:
    return calls.CpsStep(target="sippy", rate=rate, calls=ok + failed, ok=ok, failed=failed, seconds=11.0,
                         hold=1.0, retrans=0, server_cpu=10.0, sipp_cpu=0.5, rc=rc)


def test_the_best_step_may_have_a_failed_call_within_the_budget_but_not_a_sipp_error() -> None:
    # SIPp exits 1 when a call failed: 1 of 2,000 (0.05%) is within the 0.1% budget
    within = step(200, 1999, failed=1, rc=1)
    assert calls.best([step(100, 1000), within]) is within
    assert calls.best([step(100, 1000), step(200, 1990, failed=10, rc=1)]).rate == 100  # 0.5%: over
    assert calls.best([step(100, 1000), step(200, 2000, rc=255)]).rate == 100  # SIPp itself failed
    assert calls.best([step(100, 990, failed=10, rc=1)]) is None


def test_killing_a_sipp_that_dies_between_two_looks_does_not_raise(tmp_path: Any, monkeypatch: Any) -> None:
    """``kill()`` sends SIGKILL, then ``wait(timeout=0)``: when the first look finds the child still alive and it
    dies before the second, Popen.kill's poll reaped it and the blocking wait4 found no child (a CI failure in
    test_crash.py). The look is made to say "alive" once, after the child is gone."""
    import os
    import time

    sipp_calls: Any = load("_calls")
    process = sipp_calls.SippProcess("call_uas.xml", None, workdir=tmp_path, name="dying")
    process.cmd = ["sleep", "30"]
    process.start()
    real_wait4 = os.wait4
    looked: list[int] = []

    def wait4(pid: int, options: int) -> Any:
        if options == os.WNOHANG and not looked:
            looked.append(pid)
            time.sleep(0.3)  # SIGKILLed meanwhile: dead, not yet reaped
            return 0, 0, None
        return real_wait4(pid, options)

    monkeypatch.setattr(sipp_calls.os, "wait4", wait4)
    process.kill()
    assert looked == [process.pid] and process.proc.returncode == -9
    assert process.wait().returncode == -9  # the result is kept


def test_a_sipps_media_port_is_never_its_own_sip_port(monkeypatch: Any) -> None:
    """Both are picked free before SIPp binds either: the media range must not hold the SIP port (a CI run
    got the two equal, and SIPp stopped at once on its RTP socket)."""
    sipp_calls: Any = load("_calls")
    offered = iter([10838, 10836, 10840])
    monkeypatch.setattr(sipp_calls.common, "free_port", lambda kind=None: next(offered))
    assert sipp_calls.free_media_port(avoid=10838) == 10840  # not 10838 itself, nor 10836 (its range holds 10838)


def test_a_sipp_that_finds_its_picked_port_taken_is_started_again_on_another(tmp_path: Any) -> None:
    import sys

    sipp_calls: Any = load("_calls")
    process = sipp_calls.SippProcess("call_uas.xml", None, workdir=tmp_path, name="retried", local_port=12000)
    first = process.media_port
    # a stand-in for SIPp: the first start finds its media port in use and exits, the next one runs
    script = ("import pathlib, sys, time\n"
              f"flag = pathlib.Path({str(tmp_path / 'tried')!r})\n"
              "if not flag.exists():\n"
              "    flag.write_text(sys.argv[sys.argv.index('-mp') + 1])\n"
              "    print('Unable to bind audio RTP socket, errno = 98 (Address already in use)')\n"
              "    sys.exit(255)\n"
              "time.sleep(30)\n")
    process.cmd = [sys.executable, "-c", script, "-p", "12000", "-mp", str(first)]
    try:
        process.start()
        assert process.running() and (tmp_path / "tried").read_text() == str(first)
        assert process.media_port != first and process.cmd[-1] == str(process.media_port)
        assert process.local_port == 12000 and process.cmd[process.cmd.index("-p") + 1] == "12000"  # named: kept
    finally:
        process.kill()
    refused = sipp_calls.SippProcess("call_uas.xml", None, workdir=tmp_path, name="refused", local_port=12002,
                                     media_port=12010)  # every port named: nothing to pick again
    refused.cmd = [sys.executable, "-c", "print('errno = 98 (Address already in use)'); raise SystemExit(255)"]
    with pytest.raises(RuntimeError, match="exited at once"):
        refused.start()

"""Outbound calls through routing and rating to a SIPp carrier, against extension-to-extension calls.

What it does: seeds extensions, an office (area code 495), a tariff with ``--rates-count`` prefixes (the
Russian ones real decks have, plus random filler), a tenant policy (international class, the company
number as caller ID) and one carrier trunk on 127.0.0.2 (a SIPp that answers at once), starts
``zvonok serve`` and, for each rate of ``--rates``, runs two set-up steps back to back:

* **internal**: SIPp callers dial extension 7000 (a SIPp callee answering at once) — the B2BUA alone;
* **outbound**: the same callers dial ``8 495 …`` — normalization (Russian plan), class of service,
  the sell rate (longest prefix of the deck), the route, the trunk's call counter, the carrier INVITE,
  and a rated CDR (``CallRouted`` folded into it) for every call.

Both are short calls without media (``call_uac_short.xml``, hold ``--hold-ms``). Per step: achieved
calls/s, failures, the server's CPU per call; the routing and rating overhead is the ratio of CPU per
call outbound / internal at the same rate, measured in the same run. Escalation stops when both
saturate (> 1% failed or < 80% of the offered rate).

Example::

    .venv/bin/python bench/outbound.py --rates 100,200,300,400,500
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _calls as c  # noqa: E402
import _common as h  # noqa: E402
import calls as b  # noqa: E402 - the set-up step and tables of the calls benchmark

CARRIER_HOST = "127.0.0.2"
DIALED = "84951234567"


def deck(count: int) -> list[dict[str, str]]:
    """A rate deck: Russian codes plus random 4-7 digit international prefixes (reproducible)."""
    rng = random.Random(7)
    rates = [{"prefix": "7", "destination": "Russia", "price": "3.00"},
             {"prefix": "7495", "destination": "Moscow", "price": "1.00"},
             {"prefix": "7812", "destination": "St Petersburg", "price": "1.50"},
             {"prefix": "79", "destination": "Russia mobile", "price": "2.00"}]
    seen = {r["prefix"] for r in rates}
    while len(rates) < count:
        prefix = str(rng.randint(1, 6) * 10 ** 6 + rng.randint(0, 999_999))[: rng.randint(4, 7)]
        if prefix[0] != "7" and prefix not in seen:
            seen.add(prefix)
            rates.append({"prefix": prefix, "destination": f"Dest {prefix}", "price": f"{rng.randint(1, 900) / 100:.2f}"})
    return rates


def step(target: str, label: str, workdir: Path, callee: str, rate: int, seconds: float, hold_ms: int,
         server: h.ZvonokServer) -> b.CpsStep:
    calls = max(1, int(rate * seconds))
    rows = [c.caller_row(n, h.password_for(n), b.DOMAIN, callee) for n in b.CALLERS]
    rows = (rows * (calls // len(rows) + 1))[:calls]
    cpu0 = server.cpu_seconds()
    result = h.run_sipp("call_uac_short.xml", target, workdir=workdir, rows=rows, calls=calls, rate=rate,
                        timeout=seconds + hold_ms / 1000 + 20, auth_uri=f"sip:{callee}@{b.DOMAIN}",
                        limit=max(4 * rate, 200), name=f"{label}_{rate}",
                        extra=["-mi", h.LOOPBACK, "-mp", str(c.free_media_port()), "-d", str(hold_ms), *b.SIPP_TUNING])
    time.sleep(0.5)
    cpu1 = server.cpu_seconds()
    return b.CpsStep(target=label, rate=rate, calls=calls, ok=result.successful, failed=calls - result.successful,
                     seconds=result.traffic_seconds, hold=hold_ms / 1000, retrans=result.retransmissions,
                     server_cpu=cpu1 - cpu0, sipp_cpu=result.cpu, rc=result.returncode)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,200,300,400,500", help="offered calls/s, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument("--rates-count", type=int, default=20_000, help="prefixes in the tenant's tariff")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",") if r]
    if shutil.which(h.SIPP) is None and not Path(h.SIPP).exists():
        print("SIPp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="zvonok-bench-outbound-"))
    workdir = tmp / "sipp"
    print(f"machine: {b.machine()}\nworkdir: {tmp}", flush=True)
    seeded = h.seed(tmp / "data", domain=b.DOMAIN, numbers=[b.CPS_CALLEE, *b.CALLERS], with_token=False)
    carrier_port = h.free_sip_port()
    h.seed_pstn(tmp / "data", seeded.tenant_id, {
        "offices": [{"name": "Moscow", "area_code": "495"}],
        "tariffs": [{"name": "Retail", "plan": True, "rates": deck(args.rates_count)}],
        "trunks": [{"name": "Carrier", "host": CARRIER_HOST, "port": carrier_port}],
        "routes": [{"prefix": "", "trunk": "Carrier"}],
        "numbers": [{"number": "+74950000001", "office": "Moscow"}],
        "policies": [{"level": "tenant", "service_class": "international", "caller_id": "+74950000001"}],
    })
    server = h.ZvonokServer(data_dir=tmp / "data", env={"ZVONOK_AUTH_FAIL_LIMIT": "1000000",
                                                      "ZVONOK_INVITE_RATE_LIMIT": "100000"})
    server.start()
    target = f"{h.LOOPBACK}:{server.sip_port}"
    steps: list[b.CpsStep] = []
    code = None
    try:
        callee = b.start_callee(target, workdir, b.CPS_CALLEE, "call_uas_answer.xml", "internal_callee")
        carrier = c.SippProcess("call_uas_answer.xml", None, workdir=workdir, name="carrier", local_port=carrier_port,
                                timeout=600, keys=b.PCMA, extra=["-i", CARRIER_HOST, *b.SIPP_TUNING]).start()
        try:
            for rate in rates:
                pair = []
                for label, dialed in (("internal", b.CPS_CALLEE), ("outbound", DIALED)):
                    s = step(target, label, workdir, dialed, rate, args.step_seconds, args.hold_ms, server)
                    steps.append(s)
                    pair.append(s)
                    print(f"  {label} {rate}/s: {s.ok} ok, {s.failed} failed, {s.achieved:.0f}/s, "
                          f"{s.cpu_ms_per_call:.2f} ms CPU/call", flush=True)
                    time.sleep(1)
                if all(s.saturated for s in pair):
                    break
        finally:
            for p in (callee, carrier):
                p.stop()
                p.kill()
    finally:
        code = server.stop()
    print()
    print(f"machine: {b.machine()}")
    print(f"set-up rate, internal vs outbound (routing + rating to a SIPp carrier; {args.rates_count:,} prefixes "
          f"in the tariff; steps {args.step_seconds:.0f} s, hold {args.hold_ms} ms, no media):")
    print(b.cps_table(steps))
    for label in ("internal", "outbound"):
        good = b.best([s for s in steps if s.target == label])
        print(f"highest {label} rate with <= {b.FAILURE_BUDGET:.1%} failed: "
              + (f"{good.achieved:.0f} calls/s, {good.cpu_ms_per_call:.2f} ms CPU per call" if good else "none"))
    ratios = [(o.rate, o.cpu_ms_per_call / i.cpu_ms_per_call) for i, o in zip(steps[::2], steps[1::2], strict=False)
              if i.ok and o.ok]
    print("CPU per call, outbound / internal: " + ", ".join(f"{r}/s {x:.2f}x" for r, x in ratios))
    print(f"zvonok serve exit code on SIGTERM: {code}; total {time.monotonic() - started:.0f} s")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

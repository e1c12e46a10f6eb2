"""Server time of the web console's pages at demo size.

What it does: seeds the demo company (``zvonok demo --no-serve``) into a temporary data directory,
starts ``zvonok serve`` on free loopback ports, logs in as the demo admin, then fetches each page
``--requests`` times one after another and prints the median, p95 and max of the response time seen by
the client (loopback HTTP: an upper bound of the server's time). The issue's target is < 100 ms.

Example::

    .venv/bin/python bench/web_pages.py --requests 200
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ZvonokServer  # noqa: E402

# every page of the tenant admin's menu, and a few fragments htmx reloads
PAGES = ("/", "/extensions", "/extensions/rows", "/password", "/org", "/numbers", "/settings", "/tokens",
         "/trunks", "/routes", "/permissions", "/pins", "/billing", "/calls", "/calls/live", "/reports",
         "/reports/statement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ZvonokServer(data_dir=Path(tmp) / "data")
        demo = json.loads(server.cli("demo", "--no-serve", "--json"))
        server.start()
        try:
            with httpx.Client(base_url=server.http_url, timeout=10) as client:
                token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get("/login").text)
                assert token is not None
                r = client.post("/login", data={"email": demo["admin_login"], "password": demo["admin_password"],
                                                "csrf_token": token.group(1)})
                assert r.status_code == 303, r.text
                print(f"{'page':<20}{'median ms':>10}{'p95 ms':>10}{'max ms':>10}")  # noqa: T201
                for path in PAGES:
                    times = []
                    for _ in range(args.requests):
                        start = time.perf_counter()
                        r = client.get(path, follow_redirects=False)
                        times.append((time.perf_counter() - start) * 1000)
                        assert r.status_code in (200, 303), (path, r.status_code)
                    times.sort()
                    p95 = times[int(len(times) * 0.95) - 1]
                    print(f"{path:<20}{statistics.median(times):>10.1f}{p95:>10.1f}{times[-1]:>10.1f}")  # noqa: T201
        finally:
            server.stop()


if __name__ == "__main__":
    main()

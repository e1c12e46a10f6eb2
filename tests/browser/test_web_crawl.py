"""Every page of the web console, as each kind of user sees it, checked in Chromium.

Log in as the demo company's admin, as one of its employees and as the platform admin, and follow
every link to this site from the home page (breadth first, at most :data:`MAX_PAGES` pages a user).
Each page must answer below 400 with all its resources (no broken link, no missing static file), every
form control must have a label, no id may repeat, every image has a text alternative, body text has a
contrast of at least 4.5:1 against what is behind it (3:1 for large text, WCAG 2.1 AA, computed in
the page from ``getComputedStyle``), and at a 375 px phone width nothing may be wider than the screen.
Screenshots of each page at desktop and phone width go to the artifacts directory.

Only links are followed (GET): forms are never submitted, so the crawl changes nothing.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urlsplit

import pytest

from .conftest import Console, harness

pytestmark = pytest.mark.integration

MAX_PAGES = 40  # per user
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 812}
OPERATOR_LOGIN = "operator@platform.test"
OPERATOR_PASSWORD = "operator-password-1"
EMPLOYEE_PASSWORD = "employee-password-1"
# not pages of the console: the API and its generated docs (which load their scripts from a CDN)
NOT_PAGES = re.compile(r"^/(api/|docs|redoc|openapi\.json|metrics|healthz)")

# The checks that run inside the page; each returns a list of problems (strings).
CHECKS_JS = r"""
() => {
  const problems = [];
  const visible = (el) => {
    if (!el.getClientRects().length) return false;
    const style = getComputedStyle(el);
    return style.visibility !== "hidden" && style.display !== "none";
  };
  const describe = (el) => el.outerHTML.slice(0, 140);

  // every form control has a label (a <label>, aria-label, aria-labelledby or a title)
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    const named = (el.labels && el.labels.length) || el.getAttribute("aria-label") ||
      el.getAttribute("aria-labelledby") || el.getAttribute("title");
    if (!named) problems.push("control without a label: " + describe(el));
  }
  // every button says what it does
  for (const el of document.querySelectorAll("button")) {
    if (!el.textContent.trim() && !el.getAttribute("aria-label")) problems.push("button without a name: " + describe(el));
  }
  // no duplicate ids
  const seen = new Map();
  for (const el of document.querySelectorAll("[id]")) seen.set(el.id, (seen.get(el.id) || 0) + 1);
  for (const [id, n] of seen) if (n > 1) problems.push(`id "${id}" used ${n} times`);
  // images have a text alternative
  for (const img of document.querySelectorAll("img:not([alt])")) problems.push("image without alt: " + describe(img));
  for (const svg of document.querySelectorAll("svg[role=img]")) {
    if (!svg.getAttribute("aria-label") && !svg.querySelector("title")) problems.push("svg image without a name");
  }

  // contrast of text against its effective background (WCAG 2.1 relative luminance)
  const parse = (color) => {
    const m = color.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a), a: 1,
  });
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => {
    const layers = [];
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.backgroundImage !== "none" && !style.backgroundImage.startsWith("url(")) return null;  // a gradient
      const c = parse(style.backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let result = { r: 255, g: 255, b: 255, a: 1 };  // the canvas
    for (const layer of layers.reverse()) result = over(layer, result);
    return result;
  };
  const opacity = (el) => {
    let o = 1;
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) o *= Number(getComputedStyle(node).opacity);
    return o;
  };
  let checked = 0;
  for (const el of document.body.querySelectorAll("*")) {
    const text = Array.from(el.childNodes).filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
    if (!text || !visible(el) || el.closest("[disabled], [aria-hidden=true], .skip, option")) continue;
    const style = getComputedStyle(el);
    const fg = parse(style.color);
    const bg = background(el);
    if (!fg || !bg) continue;
    const faded = opacity(el);
    if (faded === 0) continue;  // not shown (a closed dropdown fades its menu out)
    const alpha = fg.a * faded;
    const shown = over({ ...fg, a: alpha }, bg);
    const [hi, lo] = [luminance(shown), luminance(bg)].sort((x, y) => y - x);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    checked += 1;
    if (ratio < (large ? 3 : 4.5)) {
      problems.push(`contrast ${ratio.toFixed(2)}:1 of "${text.slice(0, 40)}" (${style.color} on ` +
                    `rgb(${Math.round(bg.r)}, ${Math.round(bg.g)}, ${Math.round(bg.b)})): ${describe(el)}`);
    }
  }
  if (!checked) problems.push("no text checked for contrast");
  return problems;
}
"""


def _json_request(url: str, method: str = "GET", token: str | None = None, body: object = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - our own loopback server
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return json.loads(answer.read() or b"null")


@dataclass(frozen=True)
class Users:
    """The three users (login, password by kind: admin, employee, operator) and the demo's secrets."""

    logins: dict[str, tuple[str, str]]
    api_token: str  # the demo company's admin token
    employee_id: int
    password_101: str  # extension 101's SIP password

    def __getitem__(self, who: str) -> tuple[str, str]:
        return self.logins[who]


@pytest.fixture(scope="module")
def logins(console: Console) -> Users:
    """The demo admin, an employee given a web login, and a platform admin."""
    console.server.cli("admin", "create", "--email", OPERATOR_LOGIN, "--password", OPERATOR_PASSWORD)
    demo = json.loads(console.server.cli("demo", "--no-serve", "--json"))
    base = f"{console.url}/api/v1/tenants/{console.tenant_id}"
    employee = f"ivan.petrov@{console.domain}"
    found = _json_request(f"{base}/employees?q=ivan.petrov", token=demo["api_token"])["items"]
    assert len(found) == 1, found
    _json_request(f"{base}/employees/{found[0]['id']}", "PATCH", demo["api_token"], {"web_password": EMPLOYEE_PASSWORD})
    return Users(logins={"admin": (console.admin_login, console.admin_password), "employee": (employee, EMPLOYEE_PASSWORD),
                         "operator": (OPERATOR_LOGIN, OPERATOR_PASSWORD)},
                 api_token=demo["api_token"], employee_id=int(found[0]["id"]),
                 password_101=demo["extensions"][0]["password"])


@pytest.fixture(scope="module")
def with_data(console: Console, logins: Users) -> None:
    """Something in every list: pool numbers (one assigned), a PIN, a registered phone on 101, a voice menu, a
    queue whose agent (the employee) is logged in."""
    token = console.server.cli("token", "create", "--name", "crawl").strip().split()[-1]
    assert token.startswith("zv_"), token
    pool = f"{console.url}/api/v1/platform/numbers"
    first = _json_request(pool, "POST", token, {"number": "+74957770001", "monthly_fee": "100.00"})
    _json_request(pool, "POST", token, {"number": "+74957770002"})
    _json_request(f"{pool}/{first['id']}/assign", "POST", token, {"tenant_id": console.tenant_id})
    _json_request(f"{console.url}/api/v1/tenants/{console.tenant_id}/employees/{logins.employee_id}/pin", "PUT",
                  logins.api_token, {"pin": "4827"})
    _json_request(f"{console.url}/api/v1/tenants/{console.tenant_id}/ivr-menus", "POST", logins.api_token,
                  {"name": "Main", "prompt_text": "Здравствуйте!", "keys": {"1": {"kind": "extension", "number": "101"}},
                   "timeout_destination": {"kind": "ring", "numbers": ["101"]}})
    callcenter = f"{console.url}/api/v1/tenants/{console.tenant_id}/callcenter"
    queue = _json_request(f"{callcenter}/queues", "POST", logins.api_token, {"name": "Support", "number": "560"})
    _json_request(f"{callcenter}/queues/{queue['id']}/members", "PUT", logins.api_token,
                  {"employee_ids": [logins.employee_id]})  # the employee is an agent: the agent panel is crawled
    _json_request(f"{callcenter}/reasons", "POST", logins.api_token, {"name": "Lunch"})
    _json_request(f"{callcenter}/agents/{logins.employee_id}/login", "POST", logins.api_token, {})
    result = console.register("101", logins.password_101, local_port=harness.free_sip_port())
    assert result.successful == 1, result.describe()


def _log_in(page: Any, console: Console, email: str, password: str) -> None:
    page.goto(console.url + "/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("main form button[type=submit]")
    page.wait_for_url(console.url + "/")


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "home"


def _same_site_links(page: Any, console: Console) -> list[str]:
    hrefs: list[str] = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    found = []
    for href in hrefs:
        url, _fragment = urldefrag(href)
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != console.url:
            continue
        found.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


@pytest.mark.parametrize("who", ["admin", "employee", "operator"])
def test_every_page_is_reachable_labelled_readable_and_fits_a_phone(
        browser: Any, console: Console, logins: Users, with_data: None, artifacts: Path,
        who: str) -> None:
    context = browser.new_context(locale="en-US", viewport=DESKTOP)
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        _log_in(page, console, *logins[who])
        bad_resources: list[str] = []
        page.on("response", lambda r: bad_resources.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        # a page's own background request (htmx polling, e.g. the wallboard's every second) that the crawl's
        # next navigation cancels is no broken resource; anything else failing is
        page.on("requestfailed", lambda r: None if r.resource_type in ("xhr", "fetch") and "ERR_ABORTED" in (
            r.failure or "") else bad_resources.append(f"failed {r.url}: {r.failure}"))
        page.on("pageerror", lambda e: bad_resources.append(f"script error: {e}"))

        problems: dict[str, list[str]] = {}
        queue: deque[tuple[str, str]] = deque([("/", "(start)")])
        queued = {"/"}
        visited: list[str] = []
        while queue and len(visited) < MAX_PAGES:
            path, source = queue.popleft()
            if NOT_PAGES.match(path):
                continue
            # first as a plain request: a link to a file (a CSV export) is checked, not opened
            answer = context.request.get(console.url + path, max_redirects=0)
            if answer.status >= 400:
                problems.setdefault(path, []).append(f"HTTP {answer.status} (linked from {source})")
                continue
            if answer.status >= 300 or "text/html" not in answer.headers.get("content-type", ""):
                continue
            visited.append(path)
            bad_resources.clear()
            page.set_viewport_size(DESKTOP)
            response = page.goto(console.url + path, wait_until="load")
            assert response is not None
            page.wait_for_timeout(300)  # htmx and the page's own scripts settle
            found = list(page.evaluate(CHECKS_JS))
            slug = f"crawl-{who}-{_slug(path)}"
            page.screenshot(path=str(artifacts / f"{slug}-desktop.png"), full_page=True)
            page.set_viewport_size(PHONE)
            page.wait_for_timeout(200)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > PHONE["width"]:
                wide = page.evaluate("""(limit) => Array.from(document.body.querySelectorAll('*'))
                    .filter(el => el.getBoundingClientRect().right > limit + 1 && !el.closest('.overflow-auto'))
                    .slice(0, 5).map(el => el.outerHTML.slice(0, 100))""", PHONE["width"])
                found.append(f"{width} px wide at a {PHONE['width']} px phone width: {wide}")
            page.screenshot(path=str(artifacts / f"{slug}-phone.png"), full_page=True)
            found.extend(bad_resources)
            if found:
                problems[path] = found
            for link in _same_site_links(page, console):
                if link not in queued:
                    queued.add(link)
                    queue.append((link, path))
        # links left over by the bound are still checked for being broken
        for path, source in queue:
            if not NOT_PAGES.match(path):
                status = context.request.get(console.url + path, max_redirects=0).status
                if status >= 400:
                    problems.setdefault(path, []).append(f"HTTP {status} (linked from {source})")
        assert len(visited) >= 3, visited  # the home page and the menu were reached
        assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)
        expected = {"admin": "/extensions", "employee": "/me", "operator": "/operator/numbers"}[who]
        assert expected in visited, visited
        if who == "employee":
            assert "/me/agent" in visited, visited  # an agent has the panel in the menu
    finally:
        context.close()

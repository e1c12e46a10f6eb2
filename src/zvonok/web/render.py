"""Rendering a page: the template, the layout's context, the CSRF seed cookie.

Templates get: ``user`` (or None), ``locale``, ``csrf_token``, ``nav`` (the entries this user may
see), ``current_path``, ``languages``, ``_``/``gettext``/``ngettext`` (the request's language) and the
filters ``moment`` (a datetime in the tenant's zone) and ``money`` (an amount in the tenant's
currency), both in the request's locale.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from babel.numbers import format_percent
from starlette.requests import Request
from starlette.responses import HTMLResponse

import zvonok
from zvonok.web.auth import WebUser
from zvonok.web.i18n import LANGUAGE_NAMES, LOCALES, choose_locale, format_moment, format_money, translations
from zvonok.web.routing import nav as all_nav
from zvonok.web.session import CSRF_COOKIE, LANG_COOKIE, csrf_token, new_csrf_seed, set_cookie

TEMPLATES = Path(__file__).parent / "templates"


@jinja2.pass_context
def _moment(ctx: jinja2.runtime.Context, value: Any) -> str:
    if value is None:
        return "—"
    user = ctx.get("user")
    return format_moment(value, ctx["locale"], user.tenant_timezone if user else None)


@jinja2.pass_context
def _money(ctx: jinja2.runtime.Context, value: Decimal | float | int | None, currency: str | None = None) -> str:
    if value is None:
        return "—"
    user = ctx.get("user")
    return format_money(value, currency or (user.tenant_currency if user else None) or "USD", ctx["locale"])


def _clock(seconds: float | None) -> str:
    """Seconds as m:ss (h:mm:ss from an hour): waits and time in a status on the wallboard."""
    if seconds is None:
        return "—"
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@jinja2.pass_context
def _percent(ctx: jinja2.runtime.Context, value: float | None) -> str:
    """A 0..1 ratio in the page's language (``87 %`` in Russian, ``87%`` in English); ``—`` when undefined."""
    return "—" if value is None else format_percent(value, locale=ctx["locale"])


@lru_cache(maxsize=len(LOCALES))
def environment(locale: str) -> jinja2.Environment:
    """One environment per language (gettext is bound at install), each caching compiled templates."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters["moment"] = _moment
    env.filters["money"] = _money
    env.filters["clock"] = _clock
    env.filters["percent"] = _percent
    env.globals["version"] = zvonok.__version__
    return env


def locale_of(request: Request) -> str:
    """The language of this request (cached on it); see :mod:`zvonok.web.i18n`."""
    cached = getattr(request.state, "locale", None)
    if cached is None:
        user: WebUser | None = getattr(request.state, "user", None)
        cached = choose_locale(request.cookies.get(LANG_COOKIE), user.tenant_locale if user else None,
                               request.headers.get("accept-language"))
        request.state.locale = cached
    return str(cached)


def gettext_for(request: Request) -> Any:
    """``_`` for Python code of a page (flash messages, form errors), in the request's language."""
    return translations(locale_of(request)).gettext


def _csrf_seed(request: Request) -> tuple[str, bool]:
    seed = getattr(request.state, "csrf_seed", None) or request.cookies.get(CSRF_COOKIE)
    if seed:
        return seed, False
    request.state.csrf_seed = seed = new_csrf_seed()
    return seed, True


def render(request: Request, template: str, context: Mapping[str, Any] | None = None, *, status_code: int = 200,
           headers: Mapping[str, str] | None = None) -> HTMLResponse:
    user: WebUser | None = getattr(request.state, "user", None)
    locale = locale_of(request)
    seed, new_seed = _csrf_seed(request)
    path = request.url.path
    nav = [item for item in all_nav() if user is not None and user.role in item.roles
           and (user.is_agent or not item.agents_only)]
    # the most specific entry is the current one (/crm/deals/5 is under Deals, not Clients at /crm)
    matching = [item.href for item in nav
                if item.href == path or (item.href != "/" and path.startswith(item.href + "/"))]
    current = max(matching, key=len, default=None)
    ctx: dict[str, Any] = {
        "request": request, "user": user, "locale": locale, "languages": LANGUAGE_NAMES,
        "csrf_token": csrf_token(request.app.state.settings, seed), "current_path": path,
        "nav": [(item.href, item.label, item.href == current) for item in nav],
    }
    ctx.update(context or {})
    html = environment(locale).get_template(template).render(ctx)
    response = HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))
    if new_seed:
        set_cookie(response, request, CSRF_COOKIE, seed, max_age=None)
    return response

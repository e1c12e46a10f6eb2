"""The web console: server-rendered pages (Jinja2 + htmx) at ``/``, beside the API at ``/api/v1``.

How it fits together (how to add a page: :mod:`zvonok.web.routing`):

* :mod:`.session` — the signed session cookie (bound to the account's ``token_version``) and CSRF tokens;
* :mod:`.auth` — dependencies naming who is logged in (:data:`CurrentUser`, :data:`TenantUser`,
  :data:`TenantAdminUser`); every tenant page reads ``user.tenant`` and nothing else, so a page never
  shows another tenant's data;
* :mod:`.i18n` — one gettext catalogue (``locale/<lang>/LC_MESSAGES/messages.po``), compiled in memory
  at first use, and babel formats for dates and money;
* :mod:`.render` — :func:`render` a template with the layout's context;
* :mod:`.routing` — :func:`page_router` (CSRF on every unsafe method) and the navigation;
* :mod:`.pages` — one module per page family, each exporting ``router``.
"""

from __future__ import annotations

from zvonok.web.app import mount_web

__all__ = ["mount_web"]

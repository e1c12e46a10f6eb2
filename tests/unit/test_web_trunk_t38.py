# ruff: noqa: F811 - the fixtures of test_web.py are imported (web, a, admin_a) and named as parameters
"""The console's trunk form: the T.38 mode is offered, saved, shown again, and a bad value is refused."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from test_web import Company, Web, a, admin_a, web  # noqa: F401 - fixtures
from test_web_pstn import TRUNK_FORM, _post

from zvonok.pstn.models import Trunk


async def test_the_trunk_form_sets_the_t38_mode(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/trunks")
    assert '<select name="t38"' in page.text and '<option value="accept" selected>' in page.text
    r = await _post(admin_a, "/trunks", "/trunks", {**TRUNK_FORM, "t38": "offer"})
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        trunk = (await session.execute(select(Trunk).where(Trunk.tenant_id == a.id))).scalar_one()
    assert trunk.t38 == "offer"
    edit = await admin_a.get(f"/trunks/{trunk.id}")
    assert '<option value="offer" selected>' in edit.text
    r = await _post(admin_a, f"/trunks/{trunk.id}", f"/trunks/{trunk.id}", {**TRUNK_FORM, "password": "", "t38": "often"})
    assert r.status_code == 422 and 'id="t38-error"' in r.text
    async with web.db.session() as session:
        again = await session.get(Trunk, trunk.id)
        assert again is not None and again.t38 == "offer"  # unchanged

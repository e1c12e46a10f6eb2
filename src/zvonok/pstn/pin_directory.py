"""The access number's port to the company's people (:class:`zvonok.telephony.access.PinDirectory`): what a
PIN check reads — the extension lengths the company uses, an employee's PIN hash, their cost centre, and
who may skip the PIN from their own phone. The call engine runs no SQL; this does, for it."""

from __future__ import annotations

from sqlalchemy import func, select

from zvonok.org.models import Employee, Extension
from zvonok.pstn.models import EmployeePin
from zvonok.pstn.routing import CallerProfile
from zvonok.storage.db import Database


class EmployeePins:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def extension_lengths(self, tenant_id: int) -> list[int]:
        async with self.db.session() as s:
            return [n for (n,) in await s.execute(
                select(func.length(Extension.number)).where(Extension.tenant_id == tenant_id).distinct())]

    async def pin_hash(self, tenant_id: int, employee_id: int) -> str | None:
        async with self.db.session() as s:
            row = await s.get(EmployeePin, employee_id)
        return row.pin_hash if row is not None and row.tenant_id == tenant_id else None

    async def profile(self, tenant_id: int, employee_id: int) -> CallerProfile:
        async with self.db.session() as s:
            emp = await s.get(Employee, employee_id)
        mine = emp is not None and emp.tenant_id == tenant_id
        return CallerProfile(tenant_id=tenant_id, employee_id=employee_id,
                             department_id=emp.department_id if mine and emp else None,
                             office_id=emp.office_id if mine and emp else None)

    async def skipping_pin(self, tenant_id: int, caller_e164: str) -> int | None:
        async with self.db.session() as s:
            row = (await s.execute(
                select(Employee.id).join(EmployeePin, EmployeePin.employee_id == Employee.id)
                .where(Employee.tenant_id == tenant_id, Employee.phone == caller_e164,
                       EmployeePin.skip_for_caller_id.is_(True)))).first()
        return int(row[0]) if row else None

"""The company's organisation (tenant admins): offices, departments and employees as one nested tree.

Offices hold their top-level departments, departments their sub-departments and employees; what has no
office is listed last. Every change goes through :mod:`zvonok.org.service` (tenant-scoped: another
company's id is a 404) and answers with a redirect back to the tree; a refused change shows the tree
again with the message next to the form that caused it (4xx).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org import accounts, schemas, service
from zvonok.org.errors import InUse, OrgError
from zvonok.org.models import Account, Department, Employee, Office
from zvonok.web.auth import TenantAdminUser, WebUser
from zvonok.web.forms import BadId, optional_id, schema_errors
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/org", N_("Organisation"), ADMIN, order=30)]
LIMIT = 1000  # per kind: the tree is one page; a company past this needs search (later)
Session = Annotated[AsyncSession, Depends(get_session)]
Errors = dict[str, dict[str, str]]  # form key ("new-office", "office-3"...) -> field -> message


@dataclass
class DepartmentNode:
    department: Department
    children: list[DepartmentNode] = field(default_factory=list)
    employees: list[Employee] = field(default_factory=list)


@dataclass
class OfficeNode:
    office: Office | None  # None: what belongs to no office
    departments: list[DepartmentNode] = field(default_factory=list)
    # the office's people in departments kept elsewhere (company-wide ones): shown by department, here
    groups: dict[int, tuple[Department, list[Employee]]] = field(default_factory=dict)
    employees: list[Employee] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.departments and not self.groups and not self.employees


def build_tree(offices: list[Office], departments: list[Department], employees: list[Employee]) -> list[OfficeNode]:
    """Offices, then the office-less group (last). A department sits in its office (else in the
    office-less group), sub-departments in their parent. An employee of an office is listed in that
    office: inside their department when it is kept there, else under the department's name (a
    company-wide department); an employee of no office is in their department wherever it is kept."""
    by_office = {o.id: OfficeNode(o) for o in offices}
    nowhere = OfficeNode(None)
    nodes = {d.id: DepartmentNode(d) for d in departments}
    home: dict[int, OfficeNode] = {}  # department id -> the office node its tree is kept in

    def place(node: DepartmentNode, where: OfficeNode) -> None:
        home[node.department.id] = where
        for child in node.children:
            place(child, where)

    roots = []
    for dept in departments:
        node = nodes[dept.id]
        parent = nodes.get(dept.parent_id) if dept.parent_id is not None else None
        if parent is not None and parent is not node:
            parent.children.append(node)
        else:
            roots.append(node)
    for node in roots:
        where = by_office.get(node.department.office_id or 0, nowhere)
        where.departments.append(node)
        place(node, where)
    for emp in employees:
        own = by_office.get(emp.office_id or 0)
        dept_node = nodes.get(emp.department_id) if emp.department_id is not None else None
        if dept_node is not None and (own is None or home.get(dept_node.department.id) is own):
            dept_node.employees.append(emp)
        elif dept_node is not None and own is not None:
            own.groups.setdefault(dept_node.department.id, (dept_node.department, []))[1].append(emp)
        else:
            (own or nowhere).employees.append(emp)
    return [*by_office.values(), nowhere]


def _flat(nodes: list[DepartmentNode], depth: int = 0) -> list[tuple[int, str, int]]:
    """Departments for a select: (id, name, depth), parents before children."""
    out: list[tuple[int, str, int]] = []
    for node in nodes:
        out.append((node.department.id, node.department.name, depth))
        out.extend(_flat(node.children, depth + 1))
    return out


async def _roles(session: AsyncSession, tenant_id: int) -> dict[int, str]:
    """The login role of each employee that has a login."""
    stmt = select(Account.employee_id, Account.role).where(Account.tenant_id == tenant_id,
                                                           Account.employee_id.is_not(None))
    return {int(e): r for e, r in (await session.execute(stmt)).all()}


async def _context(session: AsyncSession, tenant_id: int) -> dict[str, Any]:
    offices, _ = await service.list_offices(session, tenant_id, limit=LIMIT)
    departments, _ = await service.list_departments(session, tenant_id, limit=LIMIT)
    employees, _ = await service.list_employees(session, tenant_id, limit=LIMIT)
    tree = build_tree(offices, departments, employees)
    return {
        "tree": tree, "offices": offices, "roles": await _roles(session, tenant_id),
        "department_choices": [row for node in tree for row in _flat(node.departments)],
        "employee_count": len(employees),
    }


async def _tree_page(request: Request, session: AsyncSession, tenant_id: int, *, forms: dict[str, dict[str, str]]
                     | None = None, errors: Errors | None = None, status_code: int = 200) -> Response:
    await session.rollback()  # whatever the refused change left in the session
    context = await _context(session, tenant_id)
    context.update(forms=forms or {}, errors=errors or {})
    return render(request, "org/index.html", context, status_code=status_code)


def _back(anchor: str = "") -> Response:
    return RedirectResponse("/org" + (f"#{anchor}" if anchor else ""), status_code=303)


def _name_errors(request: Request) -> dict[str, str]:
    _ = gettext_for(request)
    return {"name": _("Required: up to 200 characters, without line breaks."),
            "full_name": _("Required: up to 200 characters, without line breaks."),
            "city": _("Up to 200 characters, without line breaks."),
            "email": _("Not a valid email address."), "fax_email": _("Not a valid email address."),
            "phone": _("Digits, spaces, +, brackets and dashes."),
            "web_password": _("At least 8 characters."), "role": _("Choose a role from the list.")}


def _org_message(request: Request, exc: OrgError) -> str:
    """A translated message for a refused org change (the service's own text is English)."""
    _: Callable[[str], str] = gettext_for(request)
    if isinstance(exc, InUse):
        return _("Still in use: move or delete what it contains first.")
    if exc.status == 409:
        return {"name": _("This name is already taken."),
                "email": _("Another employee or login already has this email.")}.get(exc.field or "", _("Conflict."))
    if exc.field == "web_password":
        return _("A login needs the employee's email.")
    if exc.field == "role":
        return _("The employee has no login: set a password to give them one.")
    if exc.field == "parent_id":
        return _("A department cannot be inside itself.")
    if exc.field in ("office_id", "department_id"):
        return _("Choose from the list.")
    if exc.field == "email":
        return _("The employee has a login: the email cannot be removed.")
    return _("Invalid value.")


@router.get("/org")
async def org_tree(request: Request, user: TenantAdminUser, session: Session) -> Response:
    return await _tree_page(request, session, user.tenant)


# --- offices ---------------------------------------------------------------------------------------
@router.post("/org/offices")
async def create_office(request: Request, user: TenantAdminUser, session: Session,
                        name: Annotated[str, Form(max_length=300)] = "",
                        city: Annotated[str, Form(max_length=300)] = "") -> Response:
    form = {"name": name, "city": city}
    try:
        data = schemas.OfficeCreate(name=name, city=city.strip() or None)
        office = await service.create_office(session, user.tenant, data)
        await session.commit()
    except PydanticValidationError as exc:
        errors = schema_errors(exc, _name_errors(request), gettext_for(request)("Invalid value."))
        return await _tree_page(request, session, user.tenant, forms={"new-office": form},
                                errors={"new-office": errors}, status_code=422)
    except OrgError as exc:
        return await _tree_page(request, session, user.tenant, forms={"new-office": form},
                                errors={"new-office": {exc.field or "name": _org_message(request, exc)}},
                                status_code=exc.status)
    return _back(f"office-{office.id}")


@router.post("/org/offices/{office_id}")
async def rename_office(request: Request, office_id: int, user: TenantAdminUser, session: Session,
                        name: Annotated[str, Form(max_length=300)] = "") -> Response:
    return await _rename(request, session, user, f"office-{office_id}", name,
                         lambda: service.update_office(session, user.tenant, office_id, schemas.OfficeUpdate(name=name)))


@router.post("/org/offices/{office_id}/delete")
async def delete_office(request: Request, office_id: int, user: TenantAdminUser, session: Session) -> Response:
    return await _delete(request, session, user, f"office-{office_id}",
                         lambda: service.delete_office(session, user.tenant, office_id))


# --- departments -----------------------------------------------------------------------------------
@router.post("/org/departments")
async def create_department(request: Request, user: TenantAdminUser, session: Session,
                            name: Annotated[str, Form(max_length=300)] = "",
                            office_id: Annotated[str, Form(max_length=20)] = "",
                            parent_id: Annotated[str, Form(max_length=20)] = "") -> Response:
    _ = gettext_for(request)
    form = {"name": name, "office_id": office_id, "parent_id": parent_id}
    try:
        data = schemas.DepartmentCreate(name=name, office_id=optional_id(office_id), parent_id=optional_id(parent_id))
        dept = await service.create_department(session, user.tenant, data)
        await session.commit()
    except BadId:
        return await _tree_page(request, session, user.tenant, forms={"new-department": form},
                                errors={"new-department": {"": _("Choose from the list.")}}, status_code=422)
    except PydanticValidationError as exc:
        errors = schema_errors(exc, _name_errors(request), _("Invalid value."))
        return await _tree_page(request, session, user.tenant, forms={"new-department": form},
                                errors={"new-department": errors}, status_code=422)
    except OrgError as exc:
        return await _tree_page(request, session, user.tenant, forms={"new-department": form},
                                errors={"new-department": {exc.field or "name": _org_message(request, exc)}},
                                status_code=exc.status)
    return _back(f"department-{dept.id}")


@router.post("/org/departments/{department_id}")
async def rename_department(request: Request, department_id: int, user: TenantAdminUser, session: Session,
                            name: Annotated[str, Form(max_length=300)] = "") -> Response:
    return await _rename(request, session, user, f"department-{department_id}", name,
                         lambda: service.update_department(session, user.tenant, department_id,
                                                           schemas.DepartmentUpdate(name=name)))


@router.post("/org/departments/{department_id}/delete")
async def delete_department(request: Request, department_id: int, user: TenantAdminUser, session: Session) -> Response:
    return await _delete(request, session, user, f"department-{department_id}",
                         lambda: service.delete_department(session, user.tenant, department_id))


async def _rename(request: Request, session: AsyncSession, user: WebUser, key: str, name: str,
                  update: Callable[[], Awaitable[object]]) -> Response:
    """Rename an office or a department (``update`` builds the schema and calls the service): back to
    the tree, or the tree with the error at the form (another tenant's id: the 404 page)."""
    try:
        await update()
        await session.commit()
    except PydanticValidationError as exc:
        errors = schema_errors(exc, _name_errors(request), gettext_for(request)("Invalid value."))
        return await _tree_page(request, session, user.tenant, forms={key: {"name": name}}, errors={key: errors},
                                status_code=422)
    except OrgError as exc:
        if exc.status == 404:
            raise
        return await _tree_page(request, session, user.tenant, forms={key: {"name": name}},
                                errors={key: {"name": _org_message(request, exc)}}, status_code=exc.status)
    return _back(key)


async def _delete(request: Request, session: AsyncSession, user: WebUser, key: str,
                  delete: Callable[[], Awaitable[object]]) -> Response:
    """Delete an office or a department: back to the tree, or the tree with why not (still in use: 409)."""
    try:
        await delete()
        await session.commit()
    except OrgError as exc:
        if exc.status == 404:
            raise
        return await _tree_page(request, session, user.tenant, errors={key: {"": _org_message(request, exc)}},
                                status_code=exc.status)
    return _back()


# --- employees -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmployeeForm:
    full_name: str
    email: str
    phone: str
    office_id: str
    department_id: str
    role: str
    web_password: str
    fax_email: str = ""

    def values(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if k != "web_password"}


def _employee_form(
    full_name: Annotated[str, Form(max_length=300)] = "",
    email: Annotated[str, Form(max_length=300)] = "",
    phone: Annotated[str, Form(max_length=40)] = "",
    office_id: Annotated[str, Form(max_length=20)] = "",
    department_id: Annotated[str, Form(max_length=20)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    web_password: Annotated[str, Form(max_length=300)] = "",
    fax_email: Annotated[str, Form(max_length=300)] = "",
) -> EmployeeForm:
    return EmployeeForm(full_name, email, phone, office_id, department_id, role, web_password, fax_email)


def _employee_fields(request: Request, form: EmployeeForm) -> tuple[dict[str, Any], dict[str, str]]:
    """The schema fields of an employee form, or the errors of its id fields."""
    _ = gettext_for(request)
    errors: dict[str, str] = {}
    ids: dict[str, int | None] = {}
    for name in ("office_id", "department_id"):
        try:
            ids[name] = optional_id(getattr(form, name))
        except BadId:
            errors[name] = _("Choose from the list.")
    fields: dict[str, Any] = {"full_name": form.full_name, "email": form.email.strip() or None,
                              "fax_email": form.fax_email.strip() or None, "phone": form.phone.strip() or None, **ids}
    return fields, errors


EmployeeFormDep = Annotated[EmployeeForm, Depends(_employee_form)]


@router.post("/org/employees")
async def create_employee(request: Request, user: TenantAdminUser, session: Session, form: EmployeeFormDep) -> Response:
    _ = gettext_for(request)
    fields, errors = _employee_fields(request, form)
    status = 422
    if form.web_password:
        fields.update(web_password=form.web_password, role=form.role or "employee")
    elif form.role not in ("", "employee"):
        errors["role"] = _("The employee has no login: set a password to give them one.")
    if not errors:
        try:
            emp = await service.create_employee(session, user.tenant, schemas.EmployeeCreate(**fields))
            await session.commit()
        except PydanticValidationError as exc:
            errors = schema_errors(exc, _name_errors(request), _("Invalid value."))
        except OrgError as exc:
            errors = {exc.field or "full_name": _org_message(request, exc)}
            status = exc.status
        else:
            return _back(f"employee-{emp.id}")
    return await _tree_page(request, session, user.tenant, forms={"new-employee": form.values()},
                            errors={"new-employee": errors}, status_code=status)


async def _edit_page(request: Request, session: AsyncSession, tenant_id: int, employee: Employee,
                     form: dict[str, str], errors: dict[str, str], status_code: int = 200) -> Response:
    context = await _context(session, tenant_id)
    context.update(employee=employee, form=form, errors=errors)
    return render(request, "org/employee.html", context, status_code=status_code)


@router.get("/org/employees/{employee_id}")
async def edit_employee_form(request: Request, employee_id: int, user: TenantAdminUser, session: Session) -> Response:
    emp = await service.get_employee(session, user.tenant, employee_id)
    account = await accounts.account_for_employee(session, user.tenant, emp.id)
    form = {"full_name": emp.full_name, "email": emp.email or "", "fax_email": emp.fax_email or "",
            "phone": emp.phone or "",
            "office_id": str(emp.office_id or ""), "department_id": str(emp.department_id or ""),
            "role": account.role if account else ""}
    return await _edit_page(request, session, user.tenant, emp, form, {})


@router.post("/org/employees/{employee_id}")
async def update_employee(request: Request, employee_id: int, user: TenantAdminUser, session: Session,
                          form: EmployeeFormDep) -> Response:
    _ = gettext_for(request)
    emp = await service.get_employee(session, user.tenant, employee_id)  # another tenant's: 404 page
    account = await accounts.account_for_employee(session, user.tenant, emp.id)
    fields, errors = _employee_fields(request, form)
    if form.web_password:
        fields["web_password"] = form.web_password
    if form.role and form.role != (account.role if account else ""):
        fields["role"] = form.role  # without a login and a password the service refuses it (shown)
    status = 422
    if not errors:
        try:
            await service.update_employee(session, user.tenant, employee_id, schemas.EmployeeUpdate(**fields))
            await session.commit()
        except PydanticValidationError as exc:
            errors = schema_errors(exc, _name_errors(request), _("Invalid value."))
        except OrgError as exc:
            errors = {exc.field or "full_name": _org_message(request, exc)}
            status = exc.status
        else:
            return _back(f"employee-{employee_id}")
    await session.rollback()
    emp = await service.get_employee(session, user.tenant, employee_id)
    return await _edit_page(request, session, user.tenant, emp, form.values(), errors, status_code=status)


@router.post("/org/employees/{employee_id}/active")
async def set_employee_active(request: Request, employee_id: int, user: TenantAdminUser, session: Session,
                              active: Annotated[str, Form(max_length=5)] = "") -> Response:
    """Deactivate (their login and API tokens end at once) or reactivate an employee."""
    await service.update_employee(session, user.tenant, employee_id, schemas.EmployeeUpdate(active=active == "1"))
    await session.commit()
    return _back(f"employee-{employee_id}")

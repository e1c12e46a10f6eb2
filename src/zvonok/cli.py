"""The ``zvonok`` command line: run the server, seed a demo, and set up companies without the API.

Exit codes: 0 success, 1 an expected error (one line on stderr, no traceback), 2 bad usage.
Global flags go before the command and override ``ZVONOK_*`` environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pydantic
from sqlalchemy.exc import SQLAlchemyError

from zvonok.config import Settings
from zvonok.org import quotas

log = logging.getLogger("zvonok.cli")
T = TypeVar("T")


class CliError(Exception):
    """An expected failure: printed as one line, exit code 1."""


# --- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zvonok",
        description="Zvonok: multi-tenant cloud PBX (virtual PBX, call center, CRM).",
        epilog="Start with `zvonok demo` for a ready-to-call demo company. Settings also come from "
        "ZVONOK_* environment variables (e.g. ZVONOK_DATA_DIR); flags win.",
    )
    p.add_argument("--data-dir", help="directory for the SQLite file, keys and demo secrets (default ./data)")
    p.add_argument("--database-url", help="SQLAlchemy async URL, e.g. postgresql+asyncpg://user@host/db")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def listen_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--sip-host", help="address for SIP (UDP and TCP)")
        sp.add_argument("--sip-port", type=int, help="SIP port (0 picks a free one)")
        sp.add_argument("--http-host", help="address for the web/API")
        sp.add_argument("--http-port", type=int, help="web/API port (0 picks a free one)")

    sp = sub.add_parser("serve", help="run the PBX (SIP + HTTP API)", description="Run SIP and the HTTP API "
                        "in one process; applies database migrations first.")
    listen_flags(sp)
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("demo", help="create a demo company and run the PBX",
                        description="Create (once) the demo company with extensions 101-104, print how to "
                        "point a softphone at it, then serve. Safe to run again: same passwords.")
    listen_flags(sp)
    sp.add_argument("--no-serve", action="store_true", help="only seed and print, do not start the server")
    sp.add_argument("--json", action="store_true", help="print the demo credentials as JSON")
    sp.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_cmd", metavar="ACTION", required=True)
    db.add_parser("upgrade", help="apply migrations up to the latest schema").set_defaults(func=cmd_db_upgrade)

    tenant = sub.add_parser("tenant", help="companies").add_subparsers(dest="tenant_cmd", metavar="ACTION", required=True)
    sp = tenant.add_parser("create", help="create a company", description="Create a company (tenant) with its SIP domain.")
    sp.add_argument("--name", required=True, help="company name")
    sp.add_argument("--domain", required=True, help="SIP domain, the realm phones register to (e.g. acme.example.com)")
    sp.add_argument("--timezone", default="UTC", help="IANA time zone (default UTC), e.g. Europe/Moscow")
    sp.add_argument("--currency", default="USD", help="ISO 4217 code (default USD)")
    sp.add_argument("--locale", default="en-US", help="locale (default en-US), e.g. ru-RU")
    sp.add_argument("--json", action="store_true", help="print the tenant as JSON")
    sp.set_defaults(func=cmd_tenant_create)
    sp = tenant.add_parser("list", help="list companies")
    sp.add_argument("--json", action="store_true", help="JSON output")
    sp.set_defaults(func=cmd_tenant_list)

    ext = sub.add_parser("extension", help="extensions (SIP accounts)").add_subparsers(dest="ext_cmd", metavar="ACTION", required=True)
    sp = ext.add_parser("add", help="add an extension", description="Add an extension; prints the SIP password "
                        "when it was generated (it is stored only as a digest and cannot be shown again).")
    sp.add_argument("--tenant", required=True, metavar="DOMAIN", help="the company's SIP domain")
    sp.add_argument("--number", required=True, help="2-8 digits; also the SIP username")
    sp.add_argument("--name", required=True, help="display name")
    sp.add_argument("--password", help="SIP password (generated when omitted)")
    sp.add_argument("--json", action="store_true", help="JSON output")
    sp.set_defaults(func=cmd_extension_add)
    sp = ext.add_parser("list", help="list a company's extensions")
    sp.add_argument("--tenant", required=True, metavar="DOMAIN", help="the company's SIP domain")
    sp.add_argument("--json", action="store_true", help="JSON output")
    sp.set_defaults(func=cmd_extension_list)
    sp = ext.add_parser("passwd", help="set an extension's SIP password",
                        description="Replace an extension's SIP password (a running server accepts it within "
                        "about a second); prints it when it was generated.")
    sp.add_argument("--tenant", required=True, metavar="DOMAIN", help="the company's SIP domain")
    sp.add_argument("--number", required=True, help="the extension's number")
    sp.add_argument("--password", help="the new SIP password (generated when omitted)")
    sp.set_defaults(func=cmd_extension_passwd)

    tok = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_cmd", metavar="ACTION", required=True)
    sp = tok.add_parser("create", help="create an API token (the secret is printed once)",
                        description="Without --tenant: a platform-admin token. With --tenant: a token of that company.")
    sp.add_argument("--name", required=True, help="what the token is for")
    sp.add_argument("--tenant", metavar="DOMAIN", help="company SIP domain (omit for a platform token)")
    sp.add_argument("--role", choices=["platform_admin", "tenant_admin", "supervisor", "employee"],
                    help="default: platform_admin without --tenant, tenant_admin with it")
    sp.set_defaults(func=cmd_token_create)

    adm = sub.add_parser("admin", help="administrator logins").add_subparsers(dest="admin_cmd", metavar="ACTION", required=True)
    sp = adm.add_parser("create", help="create an admin login",
                        description="Without --tenant: a platform admin. With --tenant: that company's admin. "
                        "The password is asked for (or read from stdin when not a terminal) unless --password.")
    sp.add_argument("--email", required=True, help="login email")
    sp.add_argument("--tenant", metavar="DOMAIN", help="company SIP domain (omit for a platform admin)")
    sp.add_argument("--password", help="password (min 8 characters); prompted when omitted")
    sp.set_defaults(func=cmd_admin_create)
    from zvonok.pstn.cli import add_parser as add_rates_parser

    add_rates_parser(sub)  # zvonok rates import/export
    from zvonok.analytics.cli import add_parser as add_analytics_parser

    add_analytics_parser(sub)  # zvonok analytics export
    return p


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "database_url", "log_level", "sip_host", "sip_port", "http_host", "http_port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    settings = Settings(**overrides)
    quotas.configure(settings.tenant_quotas)  # the CLI's creates count against the same limits
    return settings


def with_db(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Open the database, bring the schema up to date, run ``fn(db)``, close."""
    from zvonok.storage.db import Database

    async def go() -> T:
        settings.prepare_data_dir()
        db = Database(settings.resolved_database_url())
        try:
            await db.upgrade()
            return await fn(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _json(data: object) -> None:
    _out(json.dumps(data, indent=2, ensure_ascii=False, default=str))


async def _tenant_id(session: Any, domain: str) -> int:
    from zvonok.org.service import tenant_by_domain

    tenant = await tenant_by_domain(session, domain)
    if tenant is None:
        raise CliError(f"no tenant with domain {domain}")
    return tenant.id


# --- commands --------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.server import run  # written alongside; imported late so the CLI works without it

    run(settings)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.org.demo import seed_demo
    from zvonok.org.softphone import softphone_accounts

    info = with_db(settings, lambda db: seed_demo(db, settings))
    settings = _demo_certificate(settings, info.domain)
    if args.json:
        _json(info.to_dict())
    else:
        _out(f"Demo company ready: SIP domain {info.domain}")
        first = info.extensions[0]
        # the same account description as the web console's softphone setup (zvonok.org.softphone)
        ways = {a.transport: a for a in softphone_accounts(settings, number=first.number, domain=info.domain,
                                                           password=first.password)}
        _out(f"Point a softphone at it: domain {info.domain}, outbound proxy (or registrar) {ways['udp'].server},")
        _out("transport UDP or TCP, username = authentication name = the extension number:")
        for ext in info.extensions:
            _out(f"  {ext.number}  {ext.name:<18} password {ext.password}")
        _out("For example, a line for baresip's ~/.baresip/accounts:")
        _out(f"  {ways['udp'].account_line()}")
        tls = ways["tls"]
        _out(f"SIP over TLS on {tls.server} (certificate {settings.sip_tls_cert}, self-signed: tell the phone to trust it),")
        _out("with SRTP media when the phone offers it (baresip: module srtp.so and mediaenc=srtp-mand):")
        _out(f"  {tls.account_line()}")
        _out(f"Web console: http://{settings.http_host}:{settings.http_port}/ — log in as "
             f"{info.admin_login} / {info.admin_password}")
        _out(f"API token (tenant admin): {info.api_token}")
        _out(f"API docs: http://{settings.http_host}:{settings.http_port}/docs")
        _out(f"Secrets are kept in {settings.data_dir / 'demo-credentials.json'}")
    if args.no_serve:
        return 0
    sys.stdout.flush()
    if settings.sip_default_domain is None:
        # a softphone given only the server's address registers to the demo company
        settings = settings.model_copy(update={"sip_default_domain": info.domain})
    return cmd_serve(args, settings)


def _demo_certificate(settings: Settings, domain: str) -> Settings:
    """The demo serves SIP over TLS too: with a self-signed pair made once into the data directory, unless
    a certificate is configured."""
    if settings.sip_tls_cert is not None:
        return settings
    from zvonok.transport.tls import write_self_signed

    cert, key = settings.data_dir / "tls" / "cert.pem", settings.data_dir / "tls" / "key.pem"
    if not (cert.exists() and key.exists()):
        host = settings.sip_advertised_host or settings.sip_host
        write_self_signed(cert, key, list(dict.fromkeys([host, domain, "localhost", "127.0.0.1"])))
    return settings.model_copy(update={"sip_tls_cert": cert, "sip_tls_key": key})


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    async def noop(db: Any) -> None:
        return None

    with_db(settings, noop)
    _out("database is up to date")
    return 0


def _tenant_row(t: Any) -> dict[str, Any]:
    from zvonok.org.schemas import TenantOut

    return TenantOut.model_validate(t).model_dump(mode="json")


def cmd_tenant_create(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.org import schemas, service

    data = schemas.TenantCreate(
        name=args.name, sip_domain=args.domain, timezone=args.timezone, currency=args.currency, locale=args.locale
    )

    async def go(db: Any) -> dict[str, Any]:
        async with db.session() as session:
            tenant = await service.platform_create_tenant(session, data)
            await session.commit()
            return _tenant_row(tenant)

    row = with_db(settings, go)
    if args.json:
        _json(row)
    else:
        _out(f"tenant {row['id']} created: {row['name']} ({row['sip_domain']})")
    return 0


def cmd_tenant_list(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.org import service

    async def go(db: Any) -> list[dict[str, Any]]:
        async with db.session() as session:
            rows, _ = await service.platform_list_tenants(session, limit=100_000)
            return [_tenant_row(t) for t in rows]

    rows = with_db(settings, go)
    if args.json:
        _json(rows)
        return 0
    if not rows:
        _out("no tenants")
    for r in rows:
        flag = " SUSPENDED" if r["suspended"] else ""
        _out(f"{r['id']:>4}  {r['sip_domain']:<30} {r['name']:<24} {r['timezone']} {r['currency']} {r['locale']}{flag}")
    return 0


def cmd_extension_add(args: argparse.Namespace, settings: Settings) -> int:
    import zvonok.ringgroup.service  # noqa: F401 - its org hook: no extension takes a ring group's number
    from zvonok.org import schemas, service

    data = schemas.ExtensionCreate(number=args.number, display_name=args.name, sip_password=args.password)

    async def go(db: Any) -> tuple[dict[str, Any], str | None]:
        async with db.session() as session:
            tenant_id = await _tenant_id(session, args.tenant)
            ext, generated = await service.create_extension(session, tenant_id, data)
            await session.commit()
            return schemas.ExtensionOut.model_validate(ext).model_dump(mode="json"), generated

    row, generated = with_db(settings, go)
    if args.json:
        _json({**row, "sip_password": generated})
    else:
        _out(f"extension {row['number']} ({row['display_name']}) created in {args.tenant}")
        if generated:
            _out(f"SIP password: {generated}  (shown once)")
    return 0


def cmd_extension_passwd(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.org import service
    from zvonok.org.credentials import generate_sip_password

    password = args.password or generate_sip_password()

    async def go(db: Any) -> None:
        async with db.session() as session:
            tenant_id = await _tenant_id(session, args.tenant)
            ext = await service.get_extension_by_number(session, tenant_id, args.number)
            await service.set_extension_password(session, tenant_id, ext.id, password)
            await session.commit()

    with_db(settings, go)
    _out(f"password of extension {args.number} in {args.tenant} changed")
    if not args.password:
        _out(f"SIP password: {password}  (shown once)")
    return 0


def cmd_extension_list(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.org import schemas, service

    async def go(db: Any) -> list[dict[str, Any]]:
        async with db.session() as session:
            tenant_id = await _tenant_id(session, args.tenant)
            rows, _ = await service.list_extensions(session, tenant_id, limit=100_000)
            return [schemas.ExtensionOut.model_validate(e).model_dump(mode="json") for e in rows]

    rows = with_db(settings, go)
    if args.json:
        _json(rows)
        return 0
    if not rows:
        _out("no extensions")
    for r in rows:
        state = "" if r["enabled"] else " (disabled)"
        _out(f"{r['number']:>8}  {r['display_name']}{state}")
    return 0


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.org import accounts
    from zvonok.org.models import Role

    role = Role(args.role) if args.role else (Role.TENANT_ADMIN if args.tenant else Role.PLATFORM_ADMIN)
    if (role is Role.PLATFORM_ADMIN) != (args.tenant is None):
        raise CliError("a platform_admin token has no --tenant; tenant_admin/supervisor/employee tokens need one")

    async def go(db: Any) -> str:
        async with db.session() as session:
            if args.tenant:
                created = await accounts.create_api_token(session, await _tenant_id(session, args.tenant), args.name, role)
            else:
                created = await accounts.platform_create_api_token(session, args.name)
            await session.commit()
            return created.secret

    _out(with_db(settings, go))
    return 0


def _read_password(given: str | None) -> str:
    if given is not None:
        return given
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat: ") != first:
        raise CliError("passwords do not match")
    return first


def cmd_admin_create(args: argparse.Namespace, settings: Settings) -> int:
    from zvonok.org import accounts
    from zvonok.org.models import Role

    password = _read_password(args.password)

    async def go(db: Any) -> int:
        async with db.session() as session:
            tenant_id = await _tenant_id(session, args.tenant) if args.tenant else None
            role = Role.TENANT_ADMIN if tenant_id is not None else Role.PLATFORM_ADMIN
            account = await accounts.platform_create_account(
                session, email=args.email, password=password, role=role, tenant_id=tenant_id
            )
            await session.commit()
            return account.id

    account_id = with_db(settings, go)
    _out(f"account {account_id} created: {args.email.strip().lower()}")
    return 0


# --- entry point -----------------------------------------------------------------------------------
class _CliLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so repeated ``main()`` calls replace, not stack, it."""


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _CliLogHandler)]:
        root.removeHandler(h)
    handler = _CliLogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    from zvonok.org.errors import OrgError

    try:
        settings = _settings(args)
        _configure_logging(settings.log_level)
        return int(args.func(args, settings))
    except (CliError, OrgError) as exc:
        return _fail(str(exc))
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "value"
        return _fail(f"{where}: {err['msg']}")
    except SQLAlchemyError as exc:
        return _fail(f"database error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    except OSError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> int:
    sys.stderr.write(f"zvonok: error: {message}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())

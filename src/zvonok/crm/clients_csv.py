"""Clients to and from CSV, without I/O: reading a file row by row into checked rows or line-numbered
problems, and writing clients as rows that a spreadsheet cannot turn into formulas.

How an import reads (the service does the database part, :func:`zvonok.crm.service_csv.import_clients`):

- the encoding is chosen by scanning the bytes first (:func:`sniff_encoding`): UTF-16 with a BOM, UTF-8
  with or without one, otherwise Windows-1251 (Russian Excel's "CSV"); anything else is refused at line 1;
- the header names the columns (case-insensitive): ``name`` is required; ``kind`` (person | company),
  ``company`` (a company's name, in the base or on an earlier row), ``owner`` (an employee's id, e-mail or
  full name), ``phones`` and ``emails`` (several separated by ``,``), ``tags`` (``,``), ``note``; any other
  name must be the key of a custom field of clients. An unknown column is an error, not silently dropped;
- the delimiter is the one of ``;``, tab, ``,`` that splits the header into names containing ``name``;
- every row is checked and *every* problem is kept with its line (up to :data:`MAX_ERRORS`); a file with
  any problem imports nothing. Problems are :class:`~zvonok.billing.rates_csv.RowError` templates, so the
  web console shows them translated;
- a phone or e-mail given on two rows is an error on the second (naming the first line); one that an
  existing client has makes the row a duplicate: it is skipped and reported, not an error (the same file
  can be imported twice).

Export writes the same columns (so an export imports back) and escapes formula injection: a cell
beginning with ``=``, ``@``, a tab or a carriage return, or with ``+``/``-`` followed by anything but a
number, gets a leading ``'`` (OWASP "CSV injection"); import removes that quote again.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

from zvonok.billing.rates_csv import RowError
from zvonok.org.schemas import check_email

from .models import CLIENT_KINDS, CrmField
from .schemas import MAX_EMAILS, MAX_PHONES, MAX_TAGS

MAX_ERRORS = 1000  # problems kept (the rest are counted): a wrong file must not fill the memory with them
MAX_ROWS = 200_000
MAX_NAME = 200
MAX_NOTE = 10_000
MAX_TAG = 40
MAX_CELL = 20_000
BASE_COLUMNS = ("kind", "name", "company", "owner", "phones", "emails", "tags", "note")
_DELIMITERS = (";", "\t", ",")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LIST_SPLIT = re.compile(r"[,\n]")
_NUMERIC = re.compile(r"[0-9 ()+,.-]*")  # a number or a list of them: no name, no reference
_FORMULA_START = ("=", "@", "\t", "\r")


def N_(template: str) -> str:  # noqa: N802 - marks a message for the web console's catalogue (babel)
    return template


# --- export ------------------------------------------------------------------------------------------
def safe_cell(value: str) -> str:
    """``value`` as a spreadsheet reads it as text: a leading ``'`` when it would start a formula."""
    if not value:
        return value
    if value.startswith(_FORMULA_START) or (value[0] in "+-" and not _NUMERIC.fullmatch(value[1:])):
        return "'" + value
    return value


def _unquote(value: str) -> str:
    """The reverse of :func:`safe_cell` for cells read back."""
    if len(value) > 1 and value[0] == "'" and (value[1] in "=@+-\t\r"):
        return value[1:]
    return value


def header(fields: Sequence[CrmField]) -> list[str]:
    return [*BASE_COLUMNS, *(f.key for f in fields)]


def row_of(client: Any, fields: Sequence[CrmField]) -> list[str]:
    """One client (a :class:`~zvonok.crm.schemas.ClientOut`) as a row under :func:`header`."""
    values = [
        client.kind,
        client.name,
        client.company_name or "",
        client.owner_name or "",
        ", ".join(p.number for p in client.phones),
        ", ".join(client.emails),
        ", ".join(client.tags),
        "",
    ]
    for definition in fields:
        value = client.fields.get(definition.key)
        values.append("" if value is None else str(value))
    return [safe_cell(v) for v in values]


def write_rows(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue()


# --- import: the file ----------------------------------------------------------------------------------
def sniff_encoding(stream: IO[bytes], chunk: int = 1 << 16) -> str | None:
    """The encoding of a seekable byte stream (read through once, left at 0), or None for binary junk."""
    stream.seek(0)
    start = stream.read(4)
    stream.seek(0)
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8-sig", "cp1251"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            while block := stream.read(chunk):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            stream.seek(0)
            continue
        stream.seek(0)
        return encoding
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class Lookup:
    """What checking a row needs from the database: custom fields by key, employees (id -> lower-case id,
    e-mail and name forms), companies of the base by lower-case name."""

    fields: dict[str, CrmField]
    owners: dict[str, int | None]  # "12", "ivan@x.ru", "ivan petrov" -> id; None: a name two employees share
    companies: dict[str, int | None]  # lower-case name -> id; None: two companies have it


@dataclass(kw_only=True, slots=True)
class ClientRow:
    line: int
    kind: str
    name: str
    company: str = ""  # lower-case name of a company (in the base or on an earlier row)
    company_id: int | None = None
    owner_id: int | None = None
    phones: list[str] = field(default_factory=list)  # as written; E.164 after :func:`check_phones`
    emails: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    note: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class Parsed:
    rows: list[ClientRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    more_errors: int = 0  # beyond MAX_ERRORS

    def fail(self, line: int, template: str, **params: object) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError.of(line, template, **params))
        else:
            self.more_errors += 1

    @property
    def error_count(self) -> int:
        return len(self.errors) + self.more_errors


def _split(value: str) -> list[str]:
    return [v.strip() for v in _LIST_SPLIT.split(value) if v.strip()]


def _field_value(definition: CrmField, raw: str) -> tuple[Any, str | None]:
    """A cell as the stored value of a custom field, or (None, an error template with {field})."""
    if definition.kind == "text":
        return (raw, None) if len(raw) <= 1000 else (None, N_("{field} is longer than 1000 characters"))
    if definition.kind == "number":
        try:
            number = float(raw.replace(",", ".").replace(" ", ""))
        except ValueError:
            return None, N_("{field} is not a number: {value}")
        if number != number or abs(number) > 1e15:
            return None, N_("{field} is not a number: {value}")
        return (int(number) if number.is_integer() else number), None
    if definition.kind == "date":
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            return None, N_("{field} is not a date like 2026-01-31: {value}")
        if not 1900 <= day.year <= 2200:
            return None, N_("{field} is not a date like 2026-01-31: {value}")
        return day.isoformat(), None
    if raw not in definition.choices:
        return None, N_("{field} must be one of {choices}: {value}")
    return raw, None


def _sniff(text: str) -> tuple[str, list[str]] | None:
    first = next((line for line in text.splitlines() if line.strip()), "")
    for delimiter in _DELIMITERS:
        names = [
            c.strip().lower().lstrip("\ufeff") for c in next(csv.reader([first], delimiter=delimiter), [])
        ]
        if "name" in names:
            return delimiter, names
    return None


def parse(text_stream: IO[str], lookup: Lookup) -> Parsed:
    """Every row of a CSV text stream checked (not yet against the clients in the base: the service does
    that in bulk); see the module docstring. The stream is read once, row by row."""
    out = Parsed()
    head = text_stream.read(1 << 16)
    if not head.strip():
        out.fail(1, N_("the file is empty"))
        return out
    sniffed = _sniff(head)
    if sniffed is None:
        out.fail(1, N_("the header must name the column {column}"), column="name")
        return out
    delimiter, _ = sniffed
    reader = csv.reader(_chain(head, text_stream), delimiter=delimiter, strict=True)
    index: dict[str, int] = {}
    try:
        names: list[str] = []
        while not any(n.strip() for n in names):
            names = next(reader)
        header_line = reader.line_num
        for position, raw in enumerate(names):
            name = raw.strip().lower().lstrip("\ufeff")
            if not name:
                continue
            if name not in BASE_COLUMNS and name not in lookup.fields:
                out.fail(header_line, N_("unknown column {name}"), name=repr(name))
            elif name in index:
                out.fail(header_line, N_("column {name} appears twice"), name=repr(name))
            else:
                index[name] = position
        if out.errors:
            return out
        seen_phones: dict[str, int] = {}
        seen_emails: dict[str, int] = {}
        new_companies: dict[str, int] = {}
        width = max(index.values()) + 1
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(out.rows) >= MAX_ROWS:
                out.fail(reader.line_num, N_("more than {max} rows: split the file"), max=MAX_ROWS)
                break
            client = _row(reader.line_num, row, index, width, lookup, new_companies, out)
            if client is None:
                continue
            if not _unique_in_file(client, seen_phones, seen_emails, out):
                continue
            if client.kind == "company":
                new_companies.setdefault(client.name.lower(), client.line)
            out.rows.append(client)
    except csv.Error as exc:
        out.fail(reader.line_num, N_("unreadable CSV: {reason}"), reason=exc)
    return out


def _chain(head: str, rest: IO[str]) -> Iterator[str]:
    """Lines of ``head`` + the rest of the stream (the csv module wants lines; newlines kept)."""
    buffered = io.StringIO(head + rest.readline())  # complete the head's last line
    yield from buffered
    yield from rest


def _row(
    line: int,
    row: list[str],
    index: dict[str, int],
    width: int,
    lookup: Lookup,
    new_companies: dict[str, int],
    out: Parsed,
) -> ClientRow | None:
    failed = out.error_count

    def cell(name: str) -> str:
        position = index.get(name)
        value = row[position].strip() if position is not None and position < len(row) else ""
        return _unquote(value)

    if len(row) > width and any(v.strip() for v in row[width:]):
        out.fail(line, N_("{values} values but the header has {width} columns"), values=len(row), width=width)
    if any(len(v) > MAX_CELL for v in row):
        out.fail(line, N_("a value is longer than {max} characters"), max=MAX_CELL)
        return None
    kind = (cell("kind") or "person").lower()
    if kind not in CLIENT_KINDS:
        out.fail(line, N_("kind {kind} is not person or company"), kind=repr(kind))
    name = cell("name")
    if not name:
        out.fail(line, N_("name is empty"))
    elif len(name) > MAX_NAME:
        out.fail(line, N_("name is longer than {max} characters"), max=MAX_NAME)
    elif _CONTROL.search(name):
        out.fail(line, N_("name contains control characters"))
    client = ClientRow(line=line, kind=kind, name=name)

    company = cell("company")
    if company:
        key = company.lower()
        if kind == "company":
            out.fail(line, N_("a company belongs to no company"))
        elif key in new_companies:
            client.company = key
        elif key not in lookup.companies:
            out.fail(line, N_("no company named {company} (add it on an earlier row)"), company=repr(company))
        elif lookup.companies[key] is None:
            out.fail(line, N_("two companies are named {company}"), company=repr(company))
        else:
            client.company_id = lookup.companies[key]
    owner = cell("owner")
    if owner:
        key = owner.lower()
        if key not in lookup.owners:
            out.fail(line, N_("no employee {owner}"), owner=repr(owner))
        elif lookup.owners[key] is None:
            out.fail(line, N_("two employees are named {owner}: give the id or e-mail"), owner=repr(owner))
        else:
            client.owner_id = lookup.owners[key]

    client.phones = _split(cell("phones"))
    if len(client.phones) > MAX_PHONES:
        out.fail(line, N_("more than {max} phones"), max=MAX_PHONES)
    emails = [e.lower() for e in _split(cell("emails"))]
    if len(emails) > MAX_EMAILS:
        out.fail(line, N_("more than {max} e-mails"), max=MAX_EMAILS)
    for email in emails:
        try:
            client.emails.append(check_email(email))
        except ValueError:
            out.fail(line, N_("{email} is not an e-mail address"), email=repr(email))
    client.emails = list(dict.fromkeys(client.emails))
    client.tags = list(dict.fromkeys(_split(cell("tags"))))
    if len(client.tags) > MAX_TAGS:
        out.fail(line, N_("more than {max} tags"), max=MAX_TAGS)
    for tag in client.tags:
        if len(tag) > MAX_TAG or _CONTROL.search(tag):
            out.fail(
                line,
                N_("tag {tag} is longer than {max} characters or has control characters"),
                tag=repr(tag[:50]),
                max=MAX_TAG,
            )
    client.note = cell("note")
    if len(client.note) > MAX_NOTE:
        out.fail(line, N_("note is longer than {max} characters"), max=MAX_NOTE)
    for key, definition in lookup.fields.items():
        raw = cell(key) if key in index else ""
        if not raw:
            if definition.required:
                out.fail(line, N_("{field} is required"), field=key)
            continue
        value, problem = _field_value(definition, raw)
        if problem is not None:
            out.fail(line, problem, field=key, value=repr(raw[:50]), choices=", ".join(definition.choices))
        else:
            client.fields[key] = value
    return client if out.error_count == failed else None


def _unique_in_file(client: ClientRow, phones: dict[str, int], emails: dict[str, int], out: Parsed) -> bool:
    """E-mails given once in the file (phones: :func:`check_phones`, once they are E.164)."""
    ok = True
    for email in client.emails:
        first = emails.setdefault(email, client.line)
        if first != client.line:
            out.fail(client.line, N_("e-mail {email} already on line {first}"), email=email, first=first)
            ok = False
    return ok


def check_phones(
    parsed: Parsed, area_of: Callable[[int | None], str | None], to_e164: Callable[[str, str | None], str]
) -> None:
    """Each row's phones to E.164 by the dialing rules of its owner's office (``area_of(owner_id)``), each
    number once in the file; rows with a problem leave ``parsed.rows``."""
    first: dict[str, int] = {}
    kept: list[ClientRow] = []
    for client in parsed.rows:
        failed = parsed.error_count
        numbers: list[str] = []
        for raw in client.phones:
            try:
                number = to_e164(raw, area_of(client.owner_id))
            except ValueError:
                parsed.fail(client.line, N_("{number} is not an outside phone number"), number=repr(raw[:40]))
                continue
            line = first.setdefault(number, client.line)
            if line != client.line:
                parsed.fail(
                    client.line, N_("phone {number} already on line {first}"), number=number, first=line
                )
            elif number not in numbers:
                numbers.append(number)
        client.phones = numbers
        if parsed.error_count == failed:
            kept.append(client)
    parsed.rows = kept

"""Import of rate decks from CSV: all rows or nothing.

How it works: the whole file is decoded and split into records first (so the total is known for the
progress callback), then every record is validated and *every* problem is collected with its line
number. The result holds either all the rates or all the errors, never a mix: a deck that is half
imported would sell some destinations at stale prices.

Accepted files:

- a header naming at least ``prefix``, ``destination``, ``rate`` (price per minute), optionally
  ``connection_fee``, ``increment`` ("60/60", "1/1", "30/6"; a bare "60" means 60/60), ``minimum``
  (billable seconds) and ``rate_<period>`` for a time-of-day price (``rate_peak``, ``rate_offpeak``);
  names are case-insensitive, empty header cells (Excel's trailing ``;;``) are ignored, any other
  unknown column is an error (a misspelt ``conection_fee`` must not silently drop every fee);
- UTF-8 with or without BOM, UTF-16 with BOM (Excel's "Unicode text"), and otherwise Windows-1251, the
  code page of Russian Excel's plain "CSV";
- the delimiter is the one of ``;``, tab, ``,`` that splits the header into the required names, so a
  Russian Excel export (``;`` with decimal commas) and a plain ``,`` file both work;
- amounts with ``.`` or ``,`` as the decimal separator, spaces (also no-break spaces) as thousands
  separators; prefixes of 1–15 digits with an optional leading ``+``. Blank lines are skipped.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from .tariffs import FLAT, MAX_PREFIX_DIGITS, PERIOD_NAME, Increment, Rate

REQUIRED = ("prefix", "destination", "rate")
MAX_DESTINATION = 200  # the column's size
OPTIONAL = ("connection_fee", "increment", "minimum")
PROGRESS_CALLS = 100  # the progress callback is called about this many times, whatever the file size

# what the rate columns hold (NUMERIC(12,4)): at most 8 integer digits and 4 decimals, so a deck that
# imports here never fails (or is rounded) in the database
_AMOUNT = re.compile(r"[0-9]{1,8}(?:[.,][0-9]{1,4})?")
_SPACES = str.maketrans("", "", " \u00a0\u202f")
_DELIMITERS = (";", "\t", ",")

ProgressCallback = Callable[[int, int], None]


def N_(template: str) -> str:  # noqa: N802 - marks a message for the web console's catalogue (babel)
    return template


@dataclass(frozen=True, kw_only=True, slots=True)
class RowError:
    """One problem of a deck: ``template`` (English, with ``{name}`` fields) and its ``params``, so that a
    page can show it in the user's language (the web console translates the template, then fills it)."""

    line: int  # 1-based line of the file (the header is usually line 1)
    template: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, line: int, template: str, **params: object) -> RowError:
        return cls(line=line, template=template, params=tuple((k, str(v)) for k, v in params.items()))

    @property
    def message(self) -> str:
        return self.template.format(**dict(self.params))

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, kw_only=True, slots=True)
class RateImport:
    """Either ``rates`` (all of them, ``errors`` empty) or ``errors`` (all of them, ``rates`` empty)."""

    rates: tuple[Rate, ...] = ()
    errors: tuple[RowError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def decode(data: bytes) -> str | None:
    """The text of a CSV file in one of the encodings Excel writes (see the module docstring), or None
    if it is none of them (Windows-1251 leaves a few bytes undefined, so binary junk is caught too)."""
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return data.decode("cp1251")
    except UnicodeDecodeError:
        return None


def parse_amount(text: str) -> Decimal | None:
    """A non-negative amount such as ``1.25``, ``1,25``, ``1 234,5``; None if it is not one."""
    compact = text.translate(_SPACES)
    if not _AMOUNT.fullmatch(compact):
        return None
    return Decimal(compact.replace(",", "."))


def _columns(header: list[str]) -> list[str]:
    return [cell.strip().lower().lstrip("\ufeff") for cell in header]


def _sniff(text: str) -> tuple[str, int] | None:
    """(delimiter, header line number) from the first non-blank line, or None."""
    # the same line splitting as the csv reader below, so the line numbers agree
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if not line.strip():
            continue
        for delimiter in _DELIMITERS:
            names = _columns(next(csv.reader([line], delimiter=delimiter), []))
            if all(name in names for name in REQUIRED):
                return delimiter, number
        return None
    return None


def parse_rates_csv(
    data: bytes | str,
    *,
    default_increment: Increment | None = None,
    on_progress: ProgressCallback | None = None,
) -> RateImport:
    """Parse and validate a whole rate deck; see the module docstring for the format.

    ``default_increment`` applies to rows without an increment (default 60/60). ``on_progress(done,
    total)`` is called about :data:`PROGRESS_CALLS` times, last with ``done == total``.
    """
    increment_default = default_increment if default_increment is not None else Increment()
    text = decode(data) if isinstance(data, bytes) else data.removeprefix("\ufeff")
    if text is None:
        return RateImport(errors=(RowError.of(1, N_("the file is not UTF-8, UTF-16 or Windows-1251 text")),))
    sniffed = _sniff(text)
    if sniffed is None:
        if not text.strip():
            return RateImport(errors=(RowError.of(1, N_("the file is empty")),))
        needed = ", ".join(REQUIRED)
        return RateImport(errors=(RowError.of(1, N_("the header must name the columns {columns}"), columns=needed),))
    delimiter, header_line = sniffed

    # strict: a stray quote is an error at its line, not a field that silently swallows the next rows
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            records.append((reader.line_num, row))
    except csv.Error as exc:
        return RateImport(errors=(RowError.of(reader.line_num, N_("unreadable CSV: {reason}"), reason=exc),))
    # skip the blank lines before the header, then the header itself
    while records and records[0][0] < header_line:
        records.pop(0)
    if not records:
        return RateImport(errors=(RowError.of(header_line, N_("unreadable header")),))
    header = _columns(records.pop(0)[1])

    errors: list[RowError] = []
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        if not name:
            continue
        period = name.removeprefix("rate_")
        period_price = name != period and period != FLAT and PERIOD_NAME.fullmatch(period) is not None
        known = name in REQUIRED or name in OPTIONAL or period_price
        if not known:
            errors.append(RowError.of(header_line, N_("unknown column {name}"), name=repr(name)))
        elif name in index:
            errors.append(RowError.of(header_line, N_("column {name} appears twice"), name=repr(name)))
        else:
            index[name] = position
    if errors:
        return RateImport(errors=tuple(errors))
    periods = [name for name in index if name.startswith("rate_")]

    rates: list[Rate] = []
    first_line: dict[str, int] = {}
    total = len(records)
    step = max(1, -(-total // PROGRESS_CALLS))
    for done, (line, row) in enumerate(records, start=1):
        if any(cell.strip() for cell in row):
            rate = _parse_row(line, row, index, periods, increment_default, errors)
            if rate is not None:
                first = first_line.setdefault(rate.prefix, line)
                if first != line:
                    errors.append(RowError.of(line, N_("prefix {prefix} already on line {first}"),
                                              prefix=rate.prefix, first=first))
                else:
                    rates.append(rate)
        if on_progress is not None and (done % step == 0 or done == total):
            on_progress(done, total)
    if total == 0 and on_progress is not None:
        on_progress(0, 0)
    if not errors and not rates:
        errors.append(RowError.of(header_line, N_("no rates after the header")))
    if errors:
        return RateImport(errors=tuple(errors))
    return RateImport(rates=tuple(rates))


def _parse_row(
    line: int,
    row: list[str],
    index: dict[str, int],
    periods: list[str],
    default_increment: Increment,
    errors: list[RowError],
) -> Rate | None:
    """The row's Rate, or None after appending each of its problems to ``errors``."""
    found = len(errors)
    width = max(index.values()) + 1

    def cell(name: str) -> str:
        position = index.get(name)
        return row[position].strip() if position is not None and position < len(row) else ""

    def fail(template: str, **params: object) -> None:
        errors.append(RowError.of(line, template, **params))

    if len(row) > width and any(value.strip() for value in row[width:]):
        fail(N_("{values} values but the header has {width} columns"), values=len(row), width=width)

    prefix = cell("prefix").removeprefix("+")
    if not prefix:
        fail(N_("prefix is empty"))
    elif not (prefix.isascii() and prefix.isdigit()) or len(prefix) > MAX_PREFIX_DIGITS:
        fail(N_("prefix {prefix} is not 1 to {max} digits"), prefix=repr(cell("prefix")), max=MAX_PREFIX_DIGITS)

    destination = cell("destination")
    if not destination:
        fail(N_("destination is empty"))
    elif not destination.isprintable():
        fail(N_("destination {destination} contains control characters"), destination=repr(destination))
    elif len(destination) > MAX_DESTINATION:
        fail(N_("destination is longer than {max} characters"), max=MAX_DESTINATION)

    def amount(name: str, *, required: bool) -> Decimal | None:
        text = cell(name)
        if not text:
            if required:
                fail(N_("{column} is empty"), column=name)
            return None
        value = parse_amount(text)
        if value is None:
            fail(N_("{column} {value} is not a non-negative number such as 1.25 or 1,25"), column=name, value=repr(text))
        return value

    price = amount("rate", required=True)
    fee = amount("connection_fee", required=False)
    period_prices: list[tuple[str, Decimal]] = []
    for column in periods:
        value = amount(column, required=False)
        if value is not None:
            period_prices.append((column[5:], value))

    increment = default_increment
    if cell("increment"):
        try:
            increment = Increment.parse(cell("increment"))
        except ValueError as exc:
            fail("{reason}", reason=exc)

    minimum = 0
    if cell("minimum"):
        text = cell("minimum")
        if text.isascii() and text.isdigit() and len(text) <= 6:
            minimum = int(text)
        else:
            fail(N_("minimum {value} is not a whole number of seconds"), value=repr(text))

    if len(errors) > found or price is None:
        return None
    try:
        return Rate(
            prefix=prefix, destination=destination, price_per_minute=price,
            connection_fee=fee if fee is not None else Decimal(0), increment=increment, minimum=minimum,
            period_prices=tuple(period_prices),
        )
    except ValueError as exc:  # a rule of Rate that the checks above do not repeat
        fail("{reason}", reason=exc)
        return None

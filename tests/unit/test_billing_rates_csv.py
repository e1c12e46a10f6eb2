"""Rate-deck CSV import: all rates or all errors, with line numbers; Excel's encodings and delimiters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from zvonok.billing import Increment, Rate, RateImport, parse_rates_csv
from zvonok.billing.rates_csv import parse_amount

D = Decimal


def errors_of(result: RateImport) -> list[tuple[int, str]]:
    assert result.rates == () and not result.ok
    return [(error.line, error.message) for error in result.errors]


def test_good_file_with_all_columns() -> None:
    text = (
        "prefix,destination,rate,connection_fee,increment,minimum\n"
        "7,Russia,1.50,,60/60,\n"
        "+7495,Moscow,0.90,0.10,1/1,10\n"
        "44,United Kingdom,3,,30/6,\n"
    )
    result = parse_rates_csv(text)
    assert result.ok and result.errors == ()
    assert result.rates == (
        Rate(prefix="7", destination="Russia", price_per_minute=D("1.50"), increment=Increment(60, 60)),
        Rate(
            prefix="7495",
            destination="Moscow",
            price_per_minute=D("0.90"),
            connection_fee=D("0.10"),
            increment=Increment(1, 1),
            minimum=10,
        ),
        Rate(prefix="44", destination="United Kingdom", price_per_minute=D("3"), increment=Increment(30, 6)),
    )


def test_minimal_columns_any_order_and_default_increment() -> None:
    result = parse_rates_csv("Rate,Prefix,Destination\n2.5,49,Germany\n", default_increment=Increment(1, 1))
    assert result.rates == (
        Rate(prefix="49", destination="Germany", price_per_minute=D("2.5"), increment=Increment(1, 1)),
    )


def test_bad_rows_report_every_problem_with_its_line() -> None:
    text = (
        "prefix,destination,rate,increment,minimum\n"  # 1
        "7,Russia,1.50,,\n"  # 2: fine
        "7a,Bad,1.00,,\n"  # 3
        "1234567890123456,Long,1,,\n"  # 4
        "\n"  # 5: blank, skipped
        "49,,1.00,,\n"  # 6
        "33,France,-1,,\n"  # 7
        "34,Spain,abc,60/0,x\n"  # 8: three problems
        "39,Italy,,,\n"  # 9
        "41,Switzerland,1,1,2,3\n"  # 10: more values than columns
    )
    assert errors_of(parse_rates_csv(text)) == [
        (3, "prefix '7a' is not 1 to 15 digits"),
        (4, "prefix '1234567890123456' is not 1 to 15 digits"),
        (6, "destination is empty"),
        (7, "rate '-1' is not a non-negative number such as 1.25 or 1,25"),
        (8, "rate 'abc' is not a non-negative number such as 1.25 or 1,25"),
        (8, "increment 60/0: both parts must be at least 1 second"),
        (8, "minimum 'x' is not a whole number of seconds"),
        (9, "rate is empty"),
        (10, "6 values but the header has 5 columns"),
    ]


def test_duplicate_prefixes_are_errors_even_with_plus() -> None:
    text = "prefix,destination,rate\n7,Russia,1\n44,UK,2\n+7,Russia again,1\n44,UK,2\n"
    assert errors_of(parse_rates_csv(text)) == [
        (4, "prefix 7 already on line 2"),
        (5, "prefix 44 already on line 3"),
    ]


def test_russian_excel_export_semicolon_decimal_comma_bom() -> None:
    text = "prefix;destination;rate;connection_fee\r\n7495;Москва, город;1,25;0,5\r\n7;Россия;1 234,50;\r\n"
    result = parse_rates_csv(text.encode("utf-8-sig"))
    assert result.ok
    assert [(r.prefix, r.destination, r.price_per_minute, r.connection_fee) for r in result.rates] == [
        ("7495", "Москва, город", D("1.25"), D("0.5")),
        ("7", "Россия", D("1234.50"), D("0")),
    ]


@pytest.mark.parametrize("encoding", ["cp1251", "utf-16", "utf-8"])
def test_excel_encodings(encoding: str) -> None:
    text = "prefix;destination;rate\n7;Россия;1,5\n"
    delimiter_text = text.replace(";", "\t") if encoding == "utf-16" else text  # Excel's "Unicode text"
    result = parse_rates_csv(delimiter_text.encode(encoding))
    assert [(r.destination, r.price_per_minute) for r in result.rates] == [("Россия", D("1.5"))]


@pytest.mark.parametrize("data", [b"prefix,destination,rate\n7,\x98,1\n", b"\xff\xfep\x00r"])
def test_undecodable_bytes(data: bytes) -> None:
    assert errors_of(parse_rates_csv(data)) == [(1, "the file is not UTF-8, UTF-16 or Windows-1251 text")]


def test_str_with_bom_and_trailing_empty_excel_columns() -> None:
    result = parse_rates_csv("\ufeffprefix;destination;rate;;\n7;Russia;1;;\n")
    assert [r.prefix for r in result.rates] == ["7"]


def test_quoted_fields_and_blank_lines_before_the_header() -> None:
    text = '\n\nprefix,destination,rate\n"7495","Moscow, city","1,5"\n7,Russia,x\n'
    assert errors_of(parse_rates_csv(text)) == [
        (5, "rate 'x' is not a non-negative number such as 1.25 or 1,25")
    ]
    good = parse_rates_csv(text.replace(",x\n", ",2\n"))
    assert [(r.destination, r.price_per_minute) for r in good.rates] == [
        ("Moscow, city", D("1.5")),
        ("Russia", D("2")),
    ]


def test_time_of_day_price_columns() -> None:
    result = parse_rates_csv("prefix,destination,rate,rate_peak\n7,Russia,0.50,1.20\n44,UK,3,\n")
    assert [(r.prefix, r.price_for("peak"), r.price_for("offpeak")) for r in result.rates] == [
        ("7", D("1.20"), D("0.50")),
        ("44", D("3"), D("3")),
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", (1, "the file is empty")),
        ("  \n\n", (1, "the file is empty")),
        ("code,name,price\n7,Russia,1\n", (1, "the header must name the columns prefix, destination, rate")),
        ("prefix,destination,rate,conection_fee\n7,Russia,1,0\n", (1, "unknown column 'conection_fee'")),
        ("prefix,destination,rate,rate\n7,Russia,1,2\n", (1, "column 'rate' appears twice")),
        ("prefix,destination,rate,rate_flat\n7,Russia,1,2\n", (1, "unknown column 'rate_flat'")),
        ("prefix,destination,rate\n", (1, "no rates after the header")),
        ("\nprefix,destination,rate\n\n", (2, "no rates after the header")),
    ],
)
def test_file_level_errors(text: str, error: tuple[int, str]) -> None:
    assert errors_of(parse_rates_csv(text)) == [error]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('prefix,destination,rate\n7,Russia,1\n44,"UK"x,1\n49,Germany,1\n', 3),  # stray quote
        ('prefix,destination,rate\n7,Russia,1\n44,"UK,1\n49,Germany,1\n', 4),  # never closed
    ],
)
def test_unreadable_csv_reports_its_line(text: str, line: int) -> None:
    assert [
        (error.line, error.message.startswith("unreadable CSV")) for error in parse_rates_csv(text).errors
    ] == [(line, True)]


def test_control_characters_in_destination_refused() -> None:
    assert errors_of(parse_rates_csv("prefix,destination,rate\n7,Rus\x00sia,1\n")) == [
        (2, "destination 'Rus\\x00sia' contains control characters")
    ]


def test_progress_on_a_large_file_is_bounded_and_ends_at_total() -> None:
    rows = "".join(f"{n},Bulk,0.01\n" for n in range(100_000, 110_000))
    calls: list[tuple[int, int]] = []
    result = parse_rates_csv(
        "prefix,destination,rate\n" + rows, on_progress=lambda done, total: calls.append((done, total))
    )
    assert len(result.rates) == 10_000
    assert 90 <= len(calls) <= 101
    assert calls[-1] == (10_000, 10_000)
    assert all(total == 10_000 for _, total in calls)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})


def test_progress_on_a_small_file_and_on_errors() -> None:
    calls: list[tuple[int, int]] = []
    result = parse_rates_csv(
        "prefix,destination,rate\n7,R,1\nx,Bad,1\n44,UK,2\n", on_progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert not result.ok


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.25", "1.25"),
        ("1,25", "1.25"),
        ("0", "0"),
        (" 12 ", "12"),
        ("1\u00a0234,5", "1234.5"),
        ("007", "7"),
    ],
)
def test_amounts_accepted(text: str, value: str) -> None:
    assert parse_amount(text) == D(value)


@pytest.mark.parametrize("text", ["-1", "+1", "1.2.3", "1,234.50", ".5", "1.", "1e3", "NaN", "", "1,2,3"])
def test_amounts_refused(text: str) -> None:
    assert parse_amount(text) is None


def test_values_the_rate_columns_cannot_hold_are_line_errors() -> None:
    """NUMERIC(12,4) and a 200-character destination: refused here, never a database error or a rounding."""
    text = ("prefix,destination,rate\n"
            "7495,Moscow,1.23456\n"  # five decimals
            "7812,Piter,123456789\n"  # nine integer digits
            f"7843,{'K' * 201},1.00\n"
            "7383,Novosibirsk,1.2345\n")  # fine
    errors = errors_of(parse_rates_csv(text))
    assert [line for line, _ in errors] == [2, 3, 4], errors
    assert "200" in errors[2][1]

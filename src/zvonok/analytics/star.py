"""The star schema of a tenant's analytics file, and the SQL that fills it from staged source rows.

How it works: :mod:`zvonok.analytics.export` copies the tenant's source rows, as they are, into DuckDB
``TEMP`` tables (:data:`STAGING`: in memory, spilled to the export's work directory; never in the file),
then the statements of :data:`BUILD` turn them into the dimensions and facts below, all with SQL inside
DuckDB. The surrogate keys are the source rows' ids (stable from one rebuild to the next, so a BI tool's
saved filters keep working); key 0 of every dimension is "(none)", and a fact whose reference is empty,
or names a row not of this tenant's, points there, so inner joins never drop a fact. ``date_key`` is the
day as ``yyyymmdd`` in the tenant's time zone (0: none).

Bump :data:`SCHEMA_VERSION` when a table or column changes meaning; docs/analytics.md describes each one.
"""

from __future__ import annotations

SCHEMA_VERSION = 2  # 2: the source copies (schema src), watermarks, incremental exports

# staged copies of the source tables: name -> columns (name, DuckDB type), in the order rows are given
STAGING: dict[str, tuple[tuple[str, str], ...]] = {
    "s_offices": (("id", "INTEGER"), ("name", "VARCHAR"), ("city", "VARCHAR"), ("timezone", "VARCHAR")),
    "s_departments": (("id", "INTEGER"), ("name", "VARCHAR"), ("office_id", "INTEGER"), ("parent_id", "INTEGER")),
    "s_employees": (("id", "INTEGER"), ("full_name", "VARCHAR"), ("email", "VARCHAR"), ("active", "BOOLEAN"),
                    ("office_id", "INTEGER"), ("department_id", "INTEGER")),
    "s_extensions": (("id", "INTEGER"), ("number", "VARCHAR")),
    "s_trunks": (("id", "INTEGER"), ("name", "VARCHAR"), ("kind", "VARCHAR")),
    "s_clients": (("id", "INTEGER"), ("kind", "VARCHAR"), ("name", "VARCHAR"), ("company_id", "INTEGER"),
                  ("owner_id", "INTEGER"), ("created_at", "TIMESTAMP")),
    "s_phones": (("client_id", "INTEGER"), ("number", "VARCHAR")),
    "s_pipelines": (("id", "INTEGER"), ("name", "VARCHAR"), ("currency", "VARCHAR")),
    "s_stages": (("id", "INTEGER"), ("pipeline_id", "INTEGER"), ("name", "VARCHAR"), ("position", "INTEGER"),
                 ("kind", "VARCHAR"), ("probability", "INTEGER")),
    "s_deals": (("id", "INTEGER"), ("pipeline_id", "INTEGER"), ("stage_id", "INTEGER"), ("title", "VARCHAR"),
                ("client_id", "INTEGER"), ("owner_id", "INTEGER"), ("amount", "DECIMAL(14,2)"),
                ("currency", "VARCHAR"), ("expected_close", "DATE"), ("created_at", "TIMESTAMP"),
                ("closed_at", "TIMESTAMP"), ("updated_at", "TIMESTAMP"), ("created_on", "DATE"), ("closed_on", "DATE")),
    "s_invoices": (("id", "INTEGER"), ("deal_id", "INTEGER"), ("number", "VARCHAR"), ("currency", "VARCHAR")),
    "s_payments": (("id", "INTEGER"), ("deal_id", "INTEGER"), ("invoice_id", "INTEGER"),
                   ("amount", "DECIMAL(14,2)"), ("paid_on", "DATE"), ("method", "VARCHAR")),
    "s_cdrs": (("id", "BIGINT"), ("call_id", "VARCHAR"), ("direction", "VARCHAR"), ("internal", "BOOLEAN"),
               ("caller_number", "VARCHAR"), ("callee_number", "VARCHAR"),
               ("caller_extension_id", "INTEGER"), ("caller_employee_id", "INTEGER"),
               ("caller_office_id", "INTEGER"), ("caller_department_id", "INTEGER"),
               ("callee_extension_id", "INTEGER"), ("callee_employee_id", "INTEGER"),
               ("callee_office_id", "INTEGER"), ("callee_department_id", "INTEGER"),
               ("started_at", "TIMESTAMP"), ("answered_at", "TIMESTAMP"), ("ended_at", "TIMESTAMP"),
               ("started_local", "TIMESTAMP"), ("started_on", "DATE"),
               ("duration", "INTEGER"), ("billsec", "INTEGER"), ("disposition", "VARCHAR"),
               ("cost", "DECIMAL(12,4)"), ("currency", "VARCHAR"), ("trunk_id", "INTEGER"), ("did", "VARCHAR"),
               ("destination_class", "VARCHAR"), ("queue", "VARCHAR"), ("ring_group", "VARCHAR")),
}

# the tables a BI tool reads, in the order they are built (dimensions before the facts that join them)
TABLES = ("dim_date", "dim_office", "dim_department", "dim_employee", "dim_client", "dim_pipeline", "dim_stage",
          "dim_trunk", "fact_calls", "fact_deals", "fact_payments")

# each table's key (its first column)
KEYS = {"dim_date": "date_key", "dim_office": "office_key", "dim_department": "department_key",
        "dim_employee": "employee_key", "dim_client": "client_key", "dim_pipeline": "pipeline_key",
        "dim_stage": "stage_key", "dim_trunk": "trunk_key", "fact_calls": "call_key", "fact_deals": "deal_key",
        "fact_payments": "payment_key"}

SCHEMA = """
CREATE TABLE dim_date (
    date_key INTEGER PRIMARY KEY, date DATE, year INTEGER, quarter INTEGER, month INTEGER, month_name VARCHAR,
    day INTEGER, iso_week INTEGER, day_of_week INTEGER, day_name VARCHAR, is_weekend BOOLEAN);
CREATE TABLE dim_office (office_key INTEGER PRIMARY KEY, name VARCHAR, city VARCHAR, timezone VARCHAR);
CREATE TABLE dim_department (
    department_key INTEGER PRIMARY KEY, name VARCHAR, office_key INTEGER, parent_key INTEGER);
CREATE TABLE dim_employee (
    employee_key INTEGER PRIMARY KEY, full_name VARCHAR, email VARCHAR, active BOOLEAN, office_key INTEGER,
    department_key INTEGER);
CREATE TABLE dim_client (
    client_key INTEGER PRIMARY KEY, name VARCHAR, kind VARCHAR, company_key INTEGER, company_name VARCHAR,
    owner_employee_key INTEGER, created_at TIMESTAMP);
CREATE TABLE dim_pipeline (pipeline_key INTEGER PRIMARY KEY, pipeline VARCHAR, currency VARCHAR);
CREATE TABLE dim_stage (
    stage_key INTEGER PRIMARY KEY, stage VARCHAR, position INTEGER, kind VARCHAR, probability INTEGER,
    pipeline_key INTEGER, pipeline VARCHAR);
CREATE TABLE dim_trunk (trunk_key INTEGER PRIMARY KEY, name VARCHAR, kind VARCHAR);
CREATE TABLE fact_calls (
    call_key BIGINT PRIMARY KEY, call_id VARCHAR, date_key INTEGER, started_at TIMESTAMP, answered_at TIMESTAMP,
    ended_at TIMESTAMP, started_local TIMESTAMP, duration INTEGER, billsec INTEGER, direction VARCHAR,
    disposition VARCHAR, internal BOOLEAN, cost DECIMAL(12,4), currency VARCHAR, trunk_key INTEGER,
    employee_key INTEGER, extension VARCHAR, department_key INTEGER, office_key INTEGER, client_key INTEGER,
    caller_number VARCHAR, callee_number VARCHAR, did VARCHAR, destination_class VARCHAR, queue VARCHAR,
    ring_group VARCHAR);
CREATE TABLE fact_deals (
    deal_key INTEGER PRIMARY KEY, title VARCHAR, amount DECIMAL(14,2), currency VARCHAR, paid DECIMAL(18,2),
    stage_key INTEGER, pipeline_key INTEGER, owner_employee_key INTEGER, client_key INTEGER,
    created_date_key INTEGER, closed_date_key INTEGER, created_at TIMESTAMP, closed_at TIMESTAMP,
    expected_close DATE);
CREATE TABLE fact_payments (
    payment_key INTEGER PRIMARY KEY, amount DECIMAL(14,2), currency VARCHAR, method VARCHAR, paid_on DATE,
    date_key INTEGER, deal_key INTEGER, invoice_key INTEGER, invoice_number VARCHAR, client_key INTEGER,
    owner_employee_key INTEGER, pipeline_key INTEGER);
CREATE TABLE export_info (
    tenant_id INTEGER, exported_at TIMESTAMP, seconds DOUBLE, schema_version INTEGER, mode VARCHAR,
    timezone VARCHAR);
CREATE TABLE export_tables (table_name VARCHAR PRIMARY KEY, row_count BIGINT, written BIGINT);
CREATE TABLE export_watermarks (
    fact_table VARCHAR PRIMARY KEY, last_id BIGINT, last_updated_at TIMESTAMP, source_rows BIGINT);
"""

# the facts' source rows as the last export read them, kept in the file (schema ``src``, not for BI tools)
# so that an incremental export reads from the PBX's database only what changed since, and builds the same
# star a full rebuild would: fact table -> (staging table, the column the watermark follows)
FACT_SOURCES: dict[str, tuple[str, str]] = {
    "fact_calls": ("s_cdrs", "id"), "fact_deals": ("s_deals", "updated_at"), "fact_payments": ("s_payments", "id")}


def src_schema() -> str:
    """The DDL of the source copies: the staging tables' columns, keyed by id."""
    out = ["CREATE SCHEMA src"]
    for table, _ in FACT_SOURCES.values():
        types = ", ".join(f"{name} {kind}" + (" PRIMARY KEY" if name == "id" else "") for name, kind in STAGING[table])
        out.append(f"CREATE TABLE src.{table} ({types})")
    return ";\n".join(out)

# dim_date spans the days the facts name, clamped to these years so that one absurd date (a payment typed
# as paid in 9999) adds one row, not three million; days outside still get their own row
_DAYS_FROM, _DAYS_TO = "1990-01-01", "2100-12-31"

BUILD = (
    "CREATE TEMP MACRO dkey(d) AS coalesce(year(d) * 10000 + month(d) * 100 + day(d), 0)",
    """CREATE TEMP TABLE s_days AS
        SELECT DISTINCT d FROM (
            SELECT started_on AS d FROM s_cdrs UNION ALL SELECT created_on FROM s_deals
            UNION ALL SELECT closed_on FROM s_deals UNION ALL SELECT expected_close FROM s_deals
            UNION ALL SELECT paid_on FROM s_payments UNION ALL SELECT CAST(? AS DATE)) WHERE d IS NOT NULL""",
    f"""INSERT INTO dim_date
        SELECT dkey(d), d, year(d), quarter(d), month(d), monthname(d), day(d), weekofyear(d), isodow(d),
               dayname(d), isodow(d) >= 6
        FROM (SELECT CAST(unnest(generate_series(
                         greatest(min(d), DATE '{_DAYS_FROM}'), least(max(d), DATE '{_DAYS_TO}'), INTERVAL 1 DAY))
                     AS DATE) AS d
              FROM s_days WHERE d BETWEEN DATE '{_DAYS_FROM}' AND DATE '{_DAYS_TO}'
              UNION SELECT d FROM s_days WHERE d NOT BETWEEN DATE '{_DAYS_FROM}' AND DATE '{_DAYS_TO}')""",
    "INSERT INTO dim_date VALUES (0, NULL, NULL, NULL, NULL, '(none)', NULL, NULL, NULL, '(none)', NULL)",
    """INSERT INTO dim_office SELECT 0, '(none)', NULL, NULL
       UNION ALL SELECT id, name, city, timezone FROM s_offices""",
    """INSERT INTO dim_department SELECT 0, '(none)', 0, 0
       UNION ALL SELECT d.id, d.name, coalesce(o.id, 0), coalesce(p.id, 0) FROM s_departments d
       LEFT JOIN s_offices o ON o.id = d.office_id LEFT JOIN s_departments p ON p.id = d.parent_id""",
    """INSERT INTO dim_employee SELECT 0, '(none)', NULL, NULL, 0, 0
       UNION ALL SELECT e.id, e.full_name, e.email, e.active, coalesce(o.id, 0), coalesce(d.id, 0)
       FROM s_employees e LEFT JOIN s_offices o ON o.id = e.office_id
       LEFT JOIN s_departments d ON d.id = e.department_id""",
    """INSERT INTO dim_client SELECT 0, '(none)', NULL, 0, NULL, 0, NULL
       UNION ALL SELECT c.id, c.name, c.kind, coalesce(co.id, 0), co.name, coalesce(e.id, 0), c.created_at
       FROM s_clients c LEFT JOIN s_clients co ON co.id = c.company_id
       LEFT JOIN s_employees e ON e.id = c.owner_id""",
    """INSERT INTO dim_pipeline SELECT 0, '(none)', NULL UNION ALL SELECT id, name, currency FROM s_pipelines""",
    """INSERT INTO dim_stage SELECT 0, '(none)', NULL, NULL, NULL, 0, '(none)'
       UNION ALL SELECT s.id, s.name, s.position, s.kind, s.probability, p.id, p.name
       FROM s_stages s JOIN s_pipelines p ON p.id = s.pipeline_id""",
    # key -1: a platform trunk (the operator's carrier), whose name is not the tenant's to read
    """INSERT INTO dim_trunk SELECT 0, '(none)', NULL UNION ALL SELECT -1, '(platform)', NULL
       UNION ALL SELECT id, name, kind FROM s_trunks""",
    # the company's party of a call: the called employee of an inbound call, the caller otherwise; the
    # client: the CRM client whose phone (E.164, exactly) is the outside party's number
    """INSERT INTO fact_calls
       SELECT c.id, c.call_id, dkey(c.started_on), c.started_at, c.answered_at, c.ended_at, c.started_local,
              c.duration, c.billsec, c.direction, c.disposition, c.internal, c.cost, c.currency,
              CASE WHEN c.trunk_id IS NULL THEN 0 WHEN t.id IS NULL THEN -1 ELSE t.id END,
              coalesce(e.id, 0), x.number, coalesce(d.id, 0), coalesce(o.id, 0), coalesce(p.client_id, 0),
              c.caller_number, c.callee_number, c.did, c.destination_class, c.queue, c.ring_group
       FROM (SELECT *,
                    CASE WHEN direction = 'inbound' THEN callee_employee_id ELSE caller_employee_id END AS employee_id,
                    CASE WHEN direction = 'inbound' THEN callee_extension_id ELSE caller_extension_id END AS extension_id,
                    CASE WHEN direction = 'inbound' THEN callee_department_id ELSE caller_department_id END
                        AS department_id,
                    CASE WHEN direction = 'inbound' THEN callee_office_id ELSE caller_office_id END AS office_id,
                    CASE direction WHEN 'inbound' THEN caller_number WHEN 'outbound' THEN callee_number END
                        AS outside_number
             FROM s_cdrs) c
       LEFT JOIN s_trunks t ON t.id = c.trunk_id
       LEFT JOIN s_employees e ON e.id = c.employee_id
       LEFT JOIN s_extensions x ON x.id = c.extension_id
       LEFT JOIN s_departments d ON d.id = c.department_id
       LEFT JOIN s_offices o ON o.id = c.office_id
       LEFT JOIN s_phones p ON p.number = c.outside_number""",
    """INSERT INTO fact_deals
       SELECT d.id, d.title, d.amount, d.currency, coalesce(paid.total, 0), coalesce(s.id, 0), coalesce(p.id, 0),
              coalesce(e.id, 0), coalesce(c.id, 0), dkey(d.created_on), dkey(d.closed_on), d.created_at,
              d.closed_at, d.expected_close
       FROM s_deals d
       LEFT JOIN (SELECT deal_id, sum(amount) AS total FROM s_payments GROUP BY deal_id) paid ON paid.deal_id = d.id
       LEFT JOIN s_stages s ON s.id = d.stage_id LEFT JOIN s_pipelines p ON p.id = d.pipeline_id
       LEFT JOIN s_employees e ON e.id = d.owner_id LEFT JOIN s_clients c ON c.id = d.client_id""",
    # a payment's currency: its invoice's, else its deal's
    """INSERT INTO fact_payments
       SELECT p.id, p.amount, coalesce(i.currency, d.currency), p.method, p.paid_on, dkey(p.paid_on),
              coalesce(d.deal_key, 0), coalesce(i.id, 0), i.number, coalesce(d.client_key, 0),
              coalesce(d.owner_employee_key, 0), coalesce(d.pipeline_key, 0)
       FROM s_payments p
       LEFT JOIN fact_deals d ON d.deal_key = p.deal_id
       LEFT JOIN s_invoices i ON i.id = p.invoice_id AND i.deal_id = p.deal_id""",
)

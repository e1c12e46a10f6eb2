"""The analytics store: each tenant's calls, deals and payments exported into a star schema in a DuckDB file
(``<data dir>/analytics/t<tenant id>.duckdb``) that BI tools open read-only. ``star.py`` is the schema and
the SQL that builds it from staged copies of the source rows, ``export.py`` one tenant's export (incremental: only
what changed since the last; a temporary file renamed over the last one), ``runner.py`` the exports of a process (one per tenant at a
time, a minimum interval between on-demand ones, the nightly run), ``http.py`` the admin's routes and
``cli.py`` ``zvonok analytics export``. See docs/analytics.md."""

# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DATA   ?= ./data

# Some machines' images set PYTHONDONTWRITEBYTECODE=1: every Python process then compiles all of src/ again
# (≈ 0.4 s of CPU per `zvonok` start; the tests start hundreds). Processes started from here write it once.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo cluster-demo test test-integration-pg peers bench-peers lint bench-register bench-calls clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Debian packages the integration tests drive: SIPp (sip-tester), baresip, chromium for the web
# console's Playwright tests (Playwright is pointed at /usr/bin/chromium: no browser download), and
# Kamailio, the SIP edge the project ships a configuration for (deploy/kamailio); and espeak-ng, which the
# server itself runs to speak IVR greetings typed as text (zvonok.ivr.prompts). The kamailio package's
# own service (its example configuration on port 5060) is stopped and disabled: the tests and
# deploy/kamailio/render.py run Kamailio with their own configuration. Dovecot (dovecot-imapd) is the
# IMAP server the CRM's e-mail tests start as an unprivileged process with a generated configuration
# (tests/unit/dovecot_server.py); its system service is stopped and disabled the same way. nats-server: the
# NATS outage tests start a private one on a free port (the machine's own NATS at 127.0.0.1:4222 is left be).
peers:
	@command -v sipp >/dev/null && command -v baresip >/dev/null && command -v espeak-ng >/dev/null \
	  && [ -x /usr/bin/chromium ] && [ -x /usr/sbin/kamailio ] && [ -x /usr/sbin/dovecot ] && [ -x /usr/sbin/nats-server ] \
	  && { ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -q libspandsp.so.2 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq sip-tester baresip \
	    espeak-ng chromium kamailio libspandsp2 dovecot-imapd nats-server >/dev/null; \
	  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	    $$SUDO systemctl disable --now kamailio dovecot >/dev/null 2>&1 || true; fi; }

demo: $(VENV)/.installed
	$(BIN)/zvonok --data-dir $(DATA) demo

# Two nodes behind Kamailio (127.0.0.2:5060) on the PostgreSQL and NATS of this machine (docs/cluster.md).
cluster-demo: $(VENV)/.installed peers
	PATH=$(BIN):$$PATH $(BIN)/python tools/cluster_demo.py --data $(DATA)-cluster

# Unit tests in four workers (pytest-xdist: each worker has its own temp dirs and databases): they wait on
# their databases much of their time, so on a 2-core machine like CI's (2026-12-05) they took 272 s in two
# workers (56% of the CPU busy) and 219 s in four (98%). The integration and browser tests in four workers, a
# test module per worker at a time (--dist loadfile: a module's server, phones and SIPp runs stay together):
# 573 s (62% busy). Six took 484 s (80%), but each of the two runs in six failed a test that has to act within a
# call's few seconds (a ring-all agent not rung yet when the first answered; the agent panel's browser test still
# taking screenshots when its 6 s call ended): four until such tests allow for more load. Every server, phone and
# SIPp run binds its own free loopback ports and (on PostgreSQL) each module has its own database.
TEST_WORKERS ?= 4
IT_WORKERS ?= 4
test: $(VENV)/.installed peers
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) tests/unit
	$(BIN)/pytest -n $(IT_WORKERS) --dist loadfile tests/integration tests/browser

# The integration suite again with the servers on PostgreSQL (a fresh database, dropped afterwards); not the
# modules marked fixed_backend, whose database is the same in both runs (the cluster's is PostgreSQL anyway).
PG_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
test-integration-pg: $(VENV)/.installed peers
	@db=zvonok_it_$$(date +%s)_$$$$; \
	$(BIN)/python tests/pgdb.py create "$(PG_ADMIN_URL)" $$db && \
	ZVONOK_TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/$$db $(BIN)/pytest -n $(IT_WORKERS) --dist loadfile -m 'not fixed_backend' tests/integration; \
	status=$$?; $(BIN)/python tests/pgdb.py drop "$(PG_ADMIN_URL)" $$db; exit $$status

bench-register: $(VENV)/.installed peers
	$(BIN)/python bench/register.py

# Debian packages only the benchmarks compare against: rtpengine (bench/calls.py --rtpengine). sippy's B2BUA
# is installed by bench/calls.py itself into its own venv (pip), outside the project's dependencies.
bench-peers: peers
	@command -v rtpengine >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends rtpengine-daemon >/dev/null; }

bench-calls: $(VENV)/.installed bench-peers
	$(BIN)/python bench/calls.py --rtpengine

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

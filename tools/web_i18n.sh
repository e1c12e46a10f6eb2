#!/bin/sh
# The web console's catalogue: extract every marked string into messages.pot and merge it into each
# language's messages.po (then translate the new/fuzzy entries and commit). The .po files are compiled
# in memory when the server first uses them (zvonok.web.i18n), so no .mo is built or committed.
#   tools/web_i18n.sh            # extract + update
#   tools/web_i18n.sh init xx    # start a new language
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/src/zvonok/web"
bin="${PYBABEL:-$root/.venv/bin/pybabel}"
cd "$web"
"$bin" -q extract -F babel.cfg -k N_ -k _ -k gettext -k ngettext:1,2 --no-location --sort-output \
  --project=zvonok --copyright-holder="Zvonok contributors" -o locale/messages.pot . ../billing/rates_csv.py ../crm/clients_csv.py ../crm/payments_csv.py ../crm/transfer.py
if [ "${1:-}" = init ]; then
  "$bin" init -i locale/messages.pot -d locale -l "$2"
else
  "$bin" -q update -i locale/messages.pot -d locale --no-wrap --ignore-obsolete
fi

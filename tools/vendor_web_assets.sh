#!/bin/sh
# Fetch the web console's third-party assets from npm and copy their dist files into
# src/zvonok/web/static/vendor/ (committed: users of Zvonok need no npm). Run again to update:
#   tools/vendor_web_assets.sh            # the pinned versions below
# Then review the diff and VENDORED.md, and commit.
set -eu
HTMX=2.0.4
PICO=2.0.6
UPLOT=1.6.31

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/src/zvonok/web/static/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
for spec in "htmx.org@$HTMX" "@picocss/pico@$PICO" "uplot@$UPLOT"; do
  npm pack --silent "$spec" >/dev/null
done
for t in *.tgz; do mkdir -p "${t%.tgz}" && tar -xzf "$t" -C "${t%.tgz}"; done
mkdir -p "$dest"
cp htmx.org-$HTMX/package/dist/htmx.min.js "$dest/htmx.min.js"
cp htmx.org-$HTMX/package/LICENSE "$dest/htmx.LICENSE"
cp picocss-pico-$PICO/package/css/pico.min.css "$dest/pico.min.css"
cp picocss-pico-$PICO/package/LICENSE.md "$dest/pico.LICENSE"
cp uplot-$UPLOT/package/dist/uPlot.iife.min.js "$dest/uPlot.iife.min.js"
cp uplot-$UPLOT/package/dist/uPlot.min.css "$dest/uPlot.min.css"
cp uplot-$UPLOT/package/LICENSE "$dest/uPlot.LICENSE"
sha() { sha256sum "$1" | cut -c1-16; }
cat > "$dest/VENDORED.md" <<MD
# Vendored web assets

Fetched from the npm registry by \`tools/vendor_web_assets.sh\` (npm pack; nothing else is built).
Do not edit these files by hand: change the versions in the script and run it again.

| file | package | version | licence | sha256 (first 16) |
|---|---|---|---|---|
| htmx.min.js | htmx.org | $HTMX | 0BSD (htmx.LICENSE) | $(sha "$dest/htmx.min.js") |
| pico.min.css | @picocss/pico | $PICO | MIT (pico.LICENSE) | $(sha "$dest/pico.min.css") |
| uPlot.iife.min.js | uplot | $UPLOT | MIT (uPlot.LICENSE) | $(sha "$dest/uPlot.iife.min.js") |
| uPlot.min.css | uplot | $UPLOT | MIT (uPlot.LICENSE) | $(sha "$dest/uPlot.min.css") |
MD
echo "vendored into $dest"

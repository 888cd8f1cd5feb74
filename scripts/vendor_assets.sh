#!/usr/bin/env bash
# Refresh the vendored front-end files from pinned npm packages: no CDN is ever contacted by
# the running application, and every file is recorded with its sha256 in VERSIONS.txt.
#
# Pins (change them here, run `make vendor`, commit the result):
#   @tabler/core 1.6.1  - Bootstrap 5 based admin CSS + JS bundle
#   htmx.org     2.0.11 - the 2.x line: 4.x changed attribute inheritance and event names,
#                         and 2.x is still maintained
#   echarts      6.1.0  - charts for dashboards
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/kehu/web/static/vendor"
PACKAGES=("@tabler/core@1.6.1" "htmx.org@2.0.11" "echarts@6.1.0")

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fetch() {  # fetch <package@version> -> unpacked into $WORK/<dir>/package
    local spec="$1" dir="$2"
    mkdir -p "$WORK/$dir"
    (cd "$WORK/$dir" && npm pack --silent "$spec" >/dev/null && tar -xzf ./*.tgz)
}

fetch "@tabler/core@1.6.1" tabler
fetch "htmx.org@2.0.11" htmx
fetch "echarts@6.1.0" echarts

rm -rf "$DEST"
mkdir -p "$DEST/tabler" "$DEST/htmx" "$DEST/echarts"
cp "$WORK/tabler/package/dist/css/tabler.min.css" "$DEST/tabler/"
cp "$WORK/tabler/package/dist/js/tabler.min.js" "$DEST/tabler/"
cp "$WORK/htmx/package/dist/htmx.min.js" "$DEST/htmx/"
cp "$WORK/echarts/package/dist/echarts.min.js" "$DEST/echarts/"
for dir in tabler htmx echarts; do
    if [ -f "$WORK/$dir/package/LICENSE" ]; then
        cp "$WORK/$dir/package/LICENSE" "$DEST/$dir/LICENSE"
    else  # Tabler ships no LICENSE file; its package.json names the licence
        node -e 'const p=require(process.argv[1]); console.log(`${p.name}@${p.version}: ${p.license} licence, see ${p.homepage || p.repository?.url || ""}`)' \
            "$WORK/$dir/package/package.json" > "$DEST/$dir/LICENSE"
    fi
done

# The app must work offline and must not tell a third party who opens it: any remote font
# @import (older Tabler releases pulled Inter from a CDN) is removed, and the check below fails
# the refresh if a remote font or CDN reference is left.
sed -i -E 's#@import url\((["'\'']?)https?://[^)]*\)[^;]*;##g' "$DEST/tabler/tabler.min.css"
if grep -Eq 'https?://(fonts|rsms|cdn)' "$DEST/tabler/tabler.min.css"; then
    echo "tabler.min.css still references a remote font or CDN" >&2
    exit 1
fi

# Source maps are not vendored; a dangling sourceMappingURL makes collectstatic's manifest
# storage fail (and browsers request a file that does not exist).
find "$DEST" -type f \( -name '*.js' -o -name '*.css' \) -print0 \
    | xargs -0 perl -0pi -e 's{/\*# sourceMappingURL=[^*]*\*/}{}g; s{^//# sourceMappingURL=\S*\s*$}{}mg' 

{
    echo "# Vendored by scripts/vendor_assets.sh on $(date -u +%Y-%m-%d); do not edit by hand."
    for spec in "${PACKAGES[@]}"; do echo "$spec"; done
    echo
    (cd "$DEST" && find . -type f ! -name VERSIONS.txt -printf '%P\n' | sort | xargs sha256sum)
} > "$DEST/VERSIONS.txt"

echo "vendored into $DEST:"
cat "$DEST/VERSIONS.txt"

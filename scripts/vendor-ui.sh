#!/usr/bin/env bash
# Re-fetches the dashboard's front-end libraries, at the pinned versions
# below, from the npm registry into services/gateway/ui/vendor, with
# their licences. The files are committed and embedded in the gateway
# (go:embed), so building and testing coffer needs neither npm nor the
# network; run this only to change a version (`make ui-vendor`), then
# check the dashboard's browser test (TestDashboard) and commit the
# result.
set -euo pipefail

PREACT_VERSION=11.2.0
HTM_VERSION=3.1.1

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/services/gateway/ui/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

log() { printf 'vendor-ui: %s\n' "$*"; }

# fetch NAME VERSION unpacks NAME@VERSION's package into $tmp/NAME.
fetch() {
	local name=$1 version=$2
	log "fetching $name@$version"
	(cd "$tmp" && npm pack --silent "$name@$version" >/dev/null)
	mkdir -p "$tmp/$name"
	tar -xzf "$tmp/$name-$version.tgz" -C "$tmp/$name" --strip-components=1
}

fetch preact "$PREACT_VERSION"
fetch htm "$HTM_VERSION"

mkdir -p "$out"
# the ES modules the dashboard's import map names (ui/index.html)
cp "$tmp/preact/dist/preact.mjs" "$out/preact.mjs"
cp "$tmp/preact/hooks/dist/hooks.mjs" "$out/preact-hooks.mjs"
cp "$tmp/preact/LICENSE" "$out/LICENSE-preact"
cp "$tmp/htm/dist/htm.mjs" "$out/htm.mjs"
cp "$tmp/htm/LICENSE" "$out/LICENSE-htm"
cat >"$out/VERSIONS" <<VERSIONS
preact $PREACT_VERSION
htm $HTM_VERSION
VERSIONS
log "wrote $out"

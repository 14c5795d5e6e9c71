#!/bin/sh
# Build (once) the Asterisk 22 root the hotline runs in, and print its path.
#
# Debian 12 has no Asterisk package; Debian's unstable suite has Asterisk 22.
# mmdebstrap builds a small root with it (~20 s, ~360 MB). The root lives in a
# cache folder outside the repo, keyed by a hash of this recipe, so a second
# run reuses it; `$CACHE/asterisk-root` points at the current one. The build
# goes to a temporary folder first: an interrupted build is never reused.
set -eu

CACHE="${HOTLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hotline}"
SUITE=sid
PACKAGES="asterisk,asterisk-core-sounds-en-wav,asterisk-moh-opsound-wav"
RECIPE="v1 $SUITE $PACKAGES"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
ROOT="$CACHE/asterisk-root-$KEY"

if [ -x "$ROOT/usr/sbin/asterisk" ] && [ -f "$ROOT/.hotline-recipe" ]; then
    ln -sfn "$ROOT" "$CACHE/asterisk-root"
    echo "$ROOT"
    exit 0
fi

command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: run make deps" >&2; exit 1; }
mkdir -p "$CACHE"
TMP="$CACHE/.build-$KEY-$$"
trap 'rm -rf "$TMP"' EXIT
echo "building the Asterisk root in $ROOT (about 20 s)..." >&2
mmdebstrap --quiet --variant=apt \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --include="$PACKAGES" "$SUITE" "$TMP" >&2
VERSION=$(chroot "$TMP" /usr/sbin/asterisk -V)
case "$VERSION" in
    "Asterisk 22."*) ;;
    *) echo "expected Asterisk 22 in the root, got: $VERSION" >&2; exit 1 ;;
esac
printf '%s\n%s\n' "$RECIPE" "$VERSION" > "$TMP/.hotline-recipe"
rm -rf "$ROOT"
mv "$TMP" "$ROOT"
trap - EXIT
ln -sfn "$ROOT" "$CACHE/asterisk-root"
echo "$VERSION ready in $ROOT" >&2
echo "$ROOT"

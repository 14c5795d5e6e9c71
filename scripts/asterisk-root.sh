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
RECIPE="v2 $SUITE $PACKAGES"
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
# Asterisk runs as the root's own unprivileged `asterisk` user. Debian gives it a
# system uid (about 101) that on the host may belong to another account (postgres,
# for one): a process may signal any process of its uid, chroot or not. Move the
# user and its group to an id that neither the host nor the root uses.
OLD_UID=$(chroot "$TMP" id -u asterisk)
OLD_GID=$(chroot "$TMP" id -g asterisk)
ID=64100
while getent passwd "$ID" >/dev/null || getent group "$ID" >/dev/null \
    || chroot "$TMP" getent passwd "$ID" >/dev/null || chroot "$TMP" getent group "$ID" >/dev/null; do
    ID=$((ID + 1))
done
chroot "$TMP" groupmod -g "$ID" asterisk
chroot "$TMP" usermod -u "$ID" -g "$ID" asterisk
find "$TMP" -xdev -uid "$OLD_UID" -exec chown -h "$ID" {} +
find "$TMP" -xdev -gid "$OLD_GID" -exec chgrp -h "$ID" {} +
printf '%s\n%s\n' "$RECIPE" "$VERSION" > "$TMP/.hotline-recipe"
rm -rf "$ROOT"
mv "$TMP" "$ROOT"
trap - EXIT
ln -sfn "$ROOT" "$CACHE/asterisk-root"
echo "$VERSION ready in $ROOT" >&2
echo "$ROOT"

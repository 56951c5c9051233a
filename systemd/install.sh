#!/bin/sh
# Installs Vigil as a systemd service on this host (run as root, from a checkout or an unpacked sdist):
#
#   /opt/vigil/venv                      Vigil in a virtual environment of its own (python3 >= 3.11): a
#                                        symlink to the venv-<time> this install built
#   /usr/local/bin/vigil                 -> /opt/vigil/venv/bin/vigil, for `vigil status`
#   /etc/vigil/vigil.yaml                the config, with model monitoring and the alert rule pack
#   /etc/vigil/alerts/inference-rules.yaml  the rule pack the config reads
#   /etc/vigil/vigil.env                 secrets for ${env:...} in the config (an existing one is kept)
#   /etc/systemd/system/vigil.service    the unit; then enabled and (re)started
#
# Run it again to upgrade: a new venv is built and checked (it must run and accept the config) before
# the symlink is switched to it, so a failed upgrade changes nothing; then the service restarts. Config
# files the operator edited are kept, with the new shipped copy beside them as NAME.new.
# DESTDIR=/some/root stages everything under that root and touches no running system (packaging, tests).
# PYTHON picks the interpreter; PIP_ARGS are passed to pip (e.g. --no-index --find-links=DIR offline).
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR:-}
PREFIX=/opt/vigil
PYTHON=${PYTHON:-python3}
PIP_ARGS=${PIP_ARGS:-}

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "install.sh: Vigil needs Python 3.11 or newer ($PYTHON is $("$PYTHON" -V 2>&1))" >&2; exit 1; }

echo "installing Vigil from $SRC into $ROOT$PREFIX"
mkdir -p "$ROOT$PREFIX" "$ROOT/etc/vigil/alerts" "$ROOT/etc/systemd/system" "$ROOT/usr/local/bin"
# A venv records its own path in its scripts, so each install builds one at the path it keeps,
# $PREFIX/venv-<time>, and $PREFIX/venv is a symlink switched to it in one rename once it is complete
# and has checked the config: a failed upgrade leaves the running service and its venv as they were.
RELEASE=venv-$(date +%Y%m%d%H%M%S)-$$
NEW=$ROOT$PREFIX/$RELEASE
fail() {  # the running service and its venv are untouched until the switch below
    rm -rf "$NEW"
    echo "install.sh: $*; the installed Vigil is unchanged" >&2
    exit 1
}
"$PYTHON" -m venv "$NEW" || fail "$PYTHON -m venv $NEW failed"
# shellcheck disable=SC2086  # PIP_ARGS is a list of words
"$NEW/bin/pip" install --quiet --disable-pip-version-check $PIP_ARGS "$SRC" \
    || fail "pip could not install Vigil from $SRC into $NEW (its output is above)"
"$NEW/bin/vigil" version >/dev/null || fail "the new $NEW/bin/vigil does not run (above: why)"
# pip builds the compiled wire reader and JSON writer only where a C compiler is at hand; without it Vigil runs, slower.
if "$NEW/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("agent._otlpscan") is None)'; then
    echo "wire reader: compiled (agent/_otlpscan.c)"
else
    echo "install.sh: built without the wire reader (no C compiler): Vigil runs, at several times the CPU per request; install gcc and the Python headers (Debian: gcc python3-dev) and run this again" >&2
fi
if "$NEW/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("agent._otlpjson") is None)'; then
    echo "json writer: compiled (agent/_otlpjson.c)"
else
    echo "install.sh: built without the JSON writer (no C compiler): the file and otlphttp/json exporters write the same text, at several times the CPU" >&2
fi

# Config files: installed when absent, upgraded while unedited (their hash is what this script last
# installed, kept in .shipped.sha256), else kept with the new shipped copy beside them as NAME.new.
SHIPPED=$ROOT/etc/vigil/.shipped.sha256
conffile() {  # conffile SOURCE DEST MODE
    src=$1 dest=$2
    new_hash=$(sha256sum < "$src" | cut -d' ' -f1)
    if [ -e "$dest" ]; then
        have=$(sha256sum < "$dest" | cut -d' ' -f1)
        last=$(grep " $dest\$" "$SHIPPED" 2>/dev/null | cut -d' ' -f1 || true)
        if [ "$have" = "$new_hash" ]; then
            return
        elif [ "$have" != "$last" ]; then
            install -m "$3" "$src" "$dest.new"
            echo "keeping $dest (edited); the new shipped one is $dest.new"
            return
        fi
    fi
    install -m "$3" "$src" "$dest"
    { grep -v " $dest\$" "$SHIPPED" 2>/dev/null || true; echo "$new_hash $dest"; } > "$SHIPPED.tmp"
    mv "$SHIPPED.tmp" "$SHIPPED"
}
conffile "$SRC/systemd/vigil.yaml" "$ROOT/etc/vigil/vigil.yaml" 0644
conffile "$SRC/agent/alerts/inference-rules.yaml" "$ROOT/etc/vigil/alerts/inference-rules.yaml" 0644
if [ ! -e "$ROOT/etc/vigil/vigil.env" ]; then  # secrets: never replaced
    install -m 0600 "$SRC/systemd/vigil.env" "$ROOT/etc/vigil/vigil.env"
fi
if [ -z "$ROOT" ]; then
    # The config as the service will read it (its rule files are under /etc/vigil), by the new Vigil.
    "$NEW/bin/vigil" validate -c /etc/vigil/vigil.yaml || fail "Vigil $("$NEW/bin/vigil" version | head -n1 \
        | cut -d' ' -f2) refuses /etc/vigil/vigil.yaml (above: why); fix it, then run this again"
fi

# The switch: one rename of a symlink. An older install's venv directory is moved aside first.
if [ -d "$ROOT$PREFIX/venv" ] && [ ! -L "$ROOT$PREFIX/venv" ]; then
    mv "$ROOT$PREFIX/venv" "$ROOT$PREFIX/venv-previous-layout"
fi
ln -sfn "$RELEASE" "$ROOT$PREFIX/venv.link"
mv -Tf "$ROOT$PREFIX/venv.link" "$ROOT$PREFIX/venv"
install -m 0644 "$SRC/README.md" "$ROOT$PREFIX/README.md"
ln -sfn "$PREFIX/venv/bin/vigil" "$ROOT/usr/local/bin/vigil"
install -m 0644 "$SRC/systemd/vigil.service" "$ROOT/etc/systemd/system/vigil.service"

remove_older_venvs() {
    for dir in "$ROOT$PREFIX"/venv-*; do
        [ "$dir" = "$NEW" ] || [ ! -d "$dir" ] || rm -rf "$dir"
    done
}
if [ -n "$ROOT" ]; then
    remove_older_venvs
    echo "staged under $ROOT; nothing started"
    exit 0
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable vigil.service
    # The old venv goes once the service runs the new one.
    systemctl restart vigil.service || {
        echo "install.sh: vigil.service did not restart; journalctl -u vigil says why" >&2; exit 1; }
    remove_older_venvs
    echo "vigil.service is running: systemctl status vigil, journalctl -u vigil, vigil status"
else
    remove_older_venvs
    echo "systemd is not running here: start Vigil with $PREFIX/venv/bin/vigil run -c /etc/vigil/vigil.yaml"
fi

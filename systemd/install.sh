#!/bin/sh
# Installs Vigil as a systemd service on this host (run as root, from a checkout or an unpacked sdist):
#
#   /opt/vigil/venv                      Vigil in a virtual environment of its own (python3 >= 3.11)
#   /usr/local/bin/vigil                 -> /opt/vigil/venv/bin/vigil, for `vigil status`
#   /etc/vigil/vigil.yaml                the config (an existing one is kept)
#   /etc/vigil/vigil.env                 secrets for ${env:...} in the config (an existing one is kept)
#   /etc/systemd/system/vigil.service    the unit; then enabled and (re)started
#
# Run it again to upgrade: the venv is rebuilt, the config kept, the service restarted.
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
mkdir -p "$ROOT$PREFIX" "$ROOT/etc/vigil" "$ROOT/etc/systemd/system" "$ROOT/usr/local/bin"
rm -rf "$ROOT$PREFIX/venv.new"
"$PYTHON" -m venv "$ROOT$PREFIX/venv.new"
# shellcheck disable=SC2086  # PIP_ARGS is a list of words
"$ROOT$PREFIX/venv.new/bin/pip" install --quiet --disable-pip-version-check $PIP_ARGS "$SRC"
# pip builds the compiled wire reader only where a C compiler is at hand; without it Vigil runs, slower.
if "$ROOT$PREFIX/venv.new/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("agent._otlpscan") is None)'; then
    echo "wire reader: compiled (agent/_otlpscan.c)"
else
    echo "install.sh: built without the wire reader (no C compiler): Vigil runs, at several times the CPU per request; install gcc and the Python headers (Debian: gcc python3-dev) and run this again" >&2
fi
# The new venv replaces the old one only once it is complete: a failed upgrade leaves the service as it was.
rm -rf "$ROOT$PREFIX/venv.old"
[ ! -d "$ROOT$PREFIX/venv" ] || mv "$ROOT$PREFIX/venv" "$ROOT$PREFIX/venv.old"
mv "$ROOT$PREFIX/venv.new" "$ROOT$PREFIX/venv"
rm -rf "$ROOT$PREFIX/venv.old"
# A venv records its own path: staged under DESTDIR, its scripts point there (fine for a staging root).
install -m 0644 "$SRC/README.md" "$ROOT$PREFIX/README.md"
ln -sf "$PREFIX/venv/bin/vigil" "$ROOT/usr/local/bin/vigil"

install -m 0644 "$SRC/systemd/vigil.service" "$ROOT/etc/systemd/system/vigil.service"
if [ -e "$ROOT/etc/vigil/vigil.yaml" ]; then
    echo "keeping $ROOT/etc/vigil/vigil.yaml"
else
    install -m 0644 "$SRC/systemd/vigil.yaml" "$ROOT/etc/vigil/vigil.yaml"
fi
if [ ! -e "$ROOT/etc/vigil/vigil.env" ]; then
    install -m 0600 "$SRC/systemd/vigil.env" "$ROOT/etc/vigil/vigil.env"
fi
if [ -n "$ROOT" ]; then
    echo "staged under $ROOT; nothing started"
    exit 0
fi
"$PREFIX/venv/bin/vigil" validate -c /etc/vigil/vigil.yaml || {
    echo "install.sh: fix /etc/vigil/vigil.yaml, then run this again" >&2; exit 1; }
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable vigil.service
    systemctl restart vigil.service
    echo "vigil.service is running: systemctl status vigil, journalctl -u vigil, vigil status"
else
    echo "systemd is not running here: start Vigil with $PREFIX/venv/bin/vigil run -c /etc/vigil/vigil.yaml"
fi

#!/bin/sh
# Removes what systemd/install.sh installed: the service, /opt/vigil and /usr/local/bin/vigil.
# The config (/etc/vigil) and the state (/var/lib/vigil: learned references, queues, alert state)
# are kept unless --purge is given. DESTDIR works as for install.sh.
set -eu

ROOT=${DESTDIR:-}
PURGE=no
[ "${1:-}" != "--purge" ] || PURGE=yes

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now vigil.service 2>/dev/null || true
fi
rm -f "$ROOT/etc/systemd/system/vigil.service"
[ -n "$ROOT" ] || [ ! -d /run/systemd/system ] || systemctl daemon-reload
if [ "$(readlink "$ROOT/usr/local/bin/vigil" 2>/dev/null)" = /opt/vigil/venv/bin/vigil ]; then
    rm -f "$ROOT/usr/local/bin/vigil"
fi
rm -rf "$ROOT/opt/vigil"
if [ "$PURGE" = yes ]; then
    # DynamicUser= keeps the state in /var/lib/private/vigil, with /var/lib/vigil a link to it.
    rm -rf "$ROOT/etc/vigil" "$ROOT/var/lib/vigil" "$ROOT/var/lib/private/vigil"
    echo "Vigil removed, with its config and state"
else
    echo "Vigil removed; kept $ROOT/etc/vigil and $ROOT/var/lib/vigil (--purge removes them)"
fi

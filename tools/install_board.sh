#!/bin/sh
# Install snisd as a systemd service on a Raspberry Pi or Odroid (Debian / Raspberry Pi OS).
#
#   sudo tools/install_board.sh            # from a checkout of the repository
#   sudo tools/install_board.sh --no-pip   # snisd is already installed as /usr/local/bin/snisd
#
# What it does (see docs/BOARD.md):
#   1. pip-installs this checkout into /opt/snisd (a virtualenv that can see the system's
#      python3-picamera2) and links /usr/local/bin/snisd to it;
#   2. copies config.yaml to /etc/snisd/config.yaml unless that file exists already (an edited
#      config is never overwritten; the new default goes next to it as config.yaml.dist);
#   3. installs systemd/snisd.service to /etc/systemd/system/ and docs/BOARD.md to
#      /usr/share/doc/snisd/, then reloads systemd and enables and (re)starts the service.
# Environment overrides: PREFIX (/opt/snisd), ETC (/etc/snisd), UNITDIR (/etc/systemd/system).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/snisd}
ETC=${ETC:-/etc/snisd}
UNITDIR=${UNITDIR:-/etc/systemd/system}
pip=yes
start=yes
for arg in "$@"; do
    case "$arg" in
        --no-pip) pip=no ;;
        --no-start) start=no ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "install_board.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "install_board.sh: run as root (sudo)" >&2
    exit 1
fi

if [ "$pip" = yes ]; then
    python3 -m venv --system-site-packages "$PREFIX"
    "$PREFIX/bin/pip" install --upgrade "$here"
    ln -sf "$PREFIX/bin/snisd" /usr/local/bin/snisd
fi
if ! command -v snisd >/dev/null 2>&1 && [ ! -x /usr/local/bin/snisd ]; then
    echo "install_board.sh: /usr/local/bin/snisd is missing (run without --no-pip)" >&2
    exit 1
fi

install -d -m 0755 "$ETC"
if [ -e "$ETC/config.yaml" ]; then
    install -m 0644 "$here/config.yaml" "$ETC/config.yaml.dist"
    echo "kept $ETC/config.yaml; the current defaults are in $ETC/config.yaml.dist"
else
    install -m 0644 "$here/config.yaml" "$ETC/config.yaml"
    echo "installed $ETC/config.yaml (edit camera.source and record.path)"
fi
# Refuse to (re)start with a configuration the daemon would reject.
/usr/local/bin/snisd --config "$ETC/config.yaml" --check-config >/dev/null

install -m 0644 "$here/systemd/snisd.service" "$UNITDIR/snisd.service"
install -d -m 0755 /usr/share/doc/snisd
install -m 0644 "$here/docs/BOARD.md" /usr/share/doc/snisd/BOARD.md
systemctl daemon-reload
systemctl enable snisd.service
if [ "$start" = yes ]; then
    systemctl restart snisd.service
    systemctl --no-pager status snisd.service || true
fi
echo "done: journalctl -u snisd -f to follow it, systemctl reload snisd after editing $ETC/config.yaml"

#!/usr/bin/env bash
# Installs edge-depth as a service: a runtime-only environment (no torch, no NNCF, no dev tools), the IRs,
# the sample clip, a config that points at them, and the systemd unit. Run by `make install-service`; safe to
# run again (an upgrade): the environment and the IRs are replaced, an existing config is never overwritten.
#
# Variables (make passes them through): PREFIX (default /usr/local), DESTDIR (a staging root: nothing is
# enabled or started when set), SYSCONFDIR (default /etc), UNITDIR (default /etc/systemd/system), MODELS
# (the IR directory, default models), PYTHON (default python3), ACCELERATORS=1 (also install the drop-in that
# opens Intel GPU and NPU devices to the service: for model.device GPU, NPU or AUTO).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/etc/systemd/system}
MODELS=${MODELS:-models}
PYTHON=${PYTHON:-python3}
ACCELERATORS=${ACCELERATORS:-}

lib=$PREFIX/lib/edge-depth       # where the service finds everything once installed
etc=$SYSCONFDIR/edge-depth
say() { printf 'install-service: %s\n' "$*"; }
fail() { printf 'install-service: error: %s\n' "$*" >&2; exit 2; }

case $MODELS in /*) ;; *) MODELS=$here/$MODELS ;; esac
[ -f "$MODELS/midas_small_int8.xml" ] || [ -f "$MODELS/midas_small_fp32.xml" ] ||
  fail "no IR in $MODELS (make one with \`make model\`, or pass MODELS=DIR)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  fail "$PYTHON is older than Python 3.11 (pass PYTHON=python3.11 or newer)"

say "runtime environment in $DESTDIR$lib/venv"
rm -rf "$DESTDIR$lib/venv"
"$PYTHON" -m venv "$DESTDIR$lib/venv"
"$DESTDIR$lib/venv/bin/python" -m pip install --quiet --upgrade pip
# A plain (non-editable) install of the project with its runtime dependencies only.
"$DESTDIR$lib/venv/bin/python" -m pip install --quiet "$here"

say "models and sample clip in $DESTDIR$lib"
install -d -m 755 "$DESTDIR$lib/models" "$DESTDIR$lib/samples"
for ir in "$MODELS"/*.xml; do
  install -m 644 "$ir" "${ir%.xml}.bin" "$DESTDIR$lib/models/"
done
[ ! -f "$MODELS/manifest.json" ] || install -m 644 "$MODELS/manifest.json" "$DESTDIR$lib/models/"
install -m 644 "$here/tests/fixtures/video/solidWhiteRight.mp4" "$DESTDIR$lib/samples/"
model=$lib/models/midas_small_int8.xml
[ -f "$DESTDIR$model" ] || model=$lib/models/midas_small_fp32.xml

install -d -m 755 "$DESTDIR$etc"
if [ -f "$DESTDIR$etc/edge-depth.yaml" ]; then
  say "kept the existing $DESTDIR$etc/edge-depth.yaml"
else
  say "config in $DESTDIR$etc/edge-depth.yaml (edit cameras and broker there)"
  sed -e "s|^\(  path: \)\.\./models/midas_small_int8\.xml|\1$model|" \
      -e "s|^\(    source: \)\.\./tests/fixtures/video/|\1$lib/samples/|" \
      "$here/config/edge-depth.yaml" > "$DESTDIR$etc/edge-depth.yaml"
  chmod 644 "$DESTDIR$etc/edge-depth.yaml"
fi
# LoadCredential= refuses to start the unit when its file is missing: an empty one until a password is set.
[ -f "$DESTDIR$etc/mqtt_password" ] || install -m 600 /dev/null "$DESTDIR$etc/mqtt_password"

say "unit in $DESTDIR$UNITDIR/edge-depth.service"
install -d -m 755 "$DESTDIR$UNITDIR"
sed -e "s|/usr/local/lib/edge-depth/\.venv|$lib/venv|g" -e "s|/usr/local/lib/edge-depth|$lib|g" \
    -e "s|/etc/edge-depth|$etc|g" "$here/systemd/edge-depth.service" > "$DESTDIR$UNITDIR/edge-depth.service"
chmod 644 "$DESTDIR$UNITDIR/edge-depth.service"
dropin=$DESTDIR$UNITDIR/edge-depth.service.d/accelerators.conf
if [ -n "$ACCELERATORS" ]; then
  say "GPU and NPU devices allowed by $dropin"
  install -D -m 644 "$here/systemd/accelerators.conf" "$dropin"
elif [ -f "$dropin" ]; then
  say "kept $dropin (from an earlier ACCELERATORS=1)"
fi

if [ -n "$DESTDIR" ]; then
  say "staged under $DESTDIR (not enabled)"
elif [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable edge-depth.service
  systemctl restart edge-depth.service
  say "enabled and started: journalctl -u edge-depth -f"
else
  say "systemd is not running here: enable it with systemctl enable --now edge-depth on the box"
fi

#!/usr/bin/env bash
# Installs ShelfSense as a systemd service on Raspberry Pi OS (or any Debian with systemd). Idempotent: a second
# run changes nothing unless the source changed; an existing /etc/shelfsense.toml is never overwritten.
#
#   sudo deploy/install.sh                 # from a checkout: user, /opt/shelfsense, /etc/shelfsense.toml, unit
#   deploy/install.sh --dry-run            # print what it would do, change nothing
#   deploy/install.sh --root /tmp/stage    # install under another root (user and systemctl steps skipped
#                                          # unless DIR/etc/passwd exists), e.g. to inspect or package the files
#
# Layout: /opt/shelfsense/src (a snapshot of the checkout: models, docs, config.toml with every default),
# /opt/shelfsense/.venv (the package, a regular install), /etc/shelfsense.toml (site settings),
# /etc/systemd/system/shelfsense.service, state in /var/lib/shelfsense (created by systemd: StateDirectory).
set -euo pipefail

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Options:
  --source DIR   checkout to install (default: the one this script is in)
  --root DIR     install under DIR instead of /
  --python PY    interpreter for the venv (default: python3; Pi OS Bookworm has 3.11)
  --extras LIST  pip extras, e.g. tflite for the tflite-runtime fallback (default: none)
  --no-venv      files, user and unit only (no pip; for tests)
  --no-start     do not enable and start the unit
  --dry-run      print the actions, change nothing
EOF
}

SOURCE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
PYTHON=python3
EXTRAS=""
VENV=1
START=1
DRY=0
while (($#)); do
  case $1 in
    --source) SOURCE=$(cd "$2" && pwd); shift 2 ;;
    --root) ROOT=${2%/}; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    --extras) EXTRAS=$2; shift 2 ;;
    --no-venv) VENV=0; shift ;;
    --no-start) START=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

USER_NAME=shelfsense
PREFIX=$ROOT/opt/shelfsense
CONFIG=$ROOT/etc/shelfsense.toml
UNIT=$ROOT/etc/systemd/system/shelfsense.service
CHANGES=0

[[ -f $SOURCE/pyproject.toml && -f $SOURCE/deploy/shelfsense.service ]] ||
  { echo "install.sh: $SOURCE is not a ShelfSense checkout" >&2; exit 2; }
if ((!DRY)) && [[ -z $ROOT ]] && (($(id -u) != 0)); then
  echo "install.sh: run it as root (sudo), or use --dry-run / --root DIR" >&2
  exit 2
fi

note() { echo "install: $*"; }
act() { # act DESCRIPTION command...: run (or, in a dry run, print) a change
  local what=$1
  shift
  CHANGES=$((CHANGES + 1))
  if ((DRY)); then
    note "would $what"
  else
    note "$what"
    "$@"
  fi
}

# ------------------------------------------------------------------------------------------------------- user
user_exists() { grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; }
if [[ -n $ROOT && ! -f $ROOT/etc/passwd ]]; then
  note "user $USER_NAME: skipped ($ROOT/etc/passwd does not exist)"
elif user_exists; then
  note "user $USER_NAME: unchanged"
else
  prefix_opt=()
  [[ -z $ROOT ]] || prefix_opt=(--prefix "$ROOT")
  act "create system user $USER_NAME" useradd "${prefix_opt[@]}" --system --user-group --no-create-home \
    --home-dir /var/lib/shelfsense --shell /usr/sbin/nologin --comment "ShelfSense service" "$USER_NAME"
fi
# vcgencmd (throttling, temperature) needs the VideoCore device nodes, which belong to group video on Pi OS.
if grep -q '^video:' "$ROOT/etc/group" 2>/dev/null && user_exists &&
  ! grep -q "^video:.*[:,]$USER_NAME\(,\|\$\)" "$ROOT/etc/group"; then
  prefix_opt=()
  [[ -z $ROOT ]] || prefix_opt=(--prefix "$ROOT")
  act "add $USER_NAME to group video (vcgencmd)" usermod "${prefix_opt[@]}" -a -G video "$USER_NAME"
fi

# ------------------------------------------------------------------------------------------ source snapshot
# What is installed is a snapshot of the checkout, named by a digest of its files: a changed checkout replaces it.
snapshot() {
  tar -C "$SOURCE" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - \
    --exclude=./.git --exclude='./.venv*' --exclude='*/__pycache__' --exclude='*.egg-info' --exclude=./build \
    --exclude=./cache --exclude=./recordings --exclude=./out --exclude=./.pytest_cache --exclude=./.ruff_cache \
    --exclude=./tests/artifacts --exclude=./bench/results --exclude=./shelf --exclude=./.hypothesis .
}
DIGEST=$(snapshot | sha256sum | cut -c1-16)
if [[ $(cat "$PREFIX/src/.shelfsense-digest" 2>/dev/null) == "$DIGEST" ]]; then
  note "$PREFIX/src: unchanged ($DIGEST)"
  SRC_CHANGED=0
else
  install_src() {
    rm -rf "$PREFIX/src.new"
    mkdir -p "$PREFIX/src.new"
    snapshot | tar -C "$PREFIX/src.new" -xf -
    echo "$DIGEST" >"$PREFIX/src.new/.shelfsense-digest"
    rm -rf "$PREFIX/src"
    mv "$PREFIX/src.new" "$PREFIX/src"
  }
  act "copy $SOURCE to $PREFIX/src ($DIGEST)" install_src
  SRC_CHANGED=1
fi

# ----------------------------------------------------------------------------------------------------- venv
if ((VENV)); then
  spec=$PREFIX/src
  [[ -z $EXTRAS ]] || spec="$spec[$EXTRAS]"
  if [[ ! -x $PREFIX/.venv/bin/python ]]; then
    act "create $PREFIX/.venv ($PYTHON)" "$PYTHON" -m venv "$PREFIX/.venv"
    SRC_CHANGED=1
  fi
  if ((SRC_CHANGED)) || [[ $(cat "$PREFIX/.venv/.shelfsense-installed" 2>/dev/null) != "$DIGEST $EXTRAS" ]]; then
    pip_install() {
      "$PREFIX/.venv/bin/pip" install --quiet --disable-pip-version-check "$spec"
      echo "$DIGEST $EXTRAS" >"$PREFIX/.venv/.shelfsense-installed"
    }
    act "pip install $spec into $PREFIX/.venv" pip_install
  else
    note "$PREFIX/.venv: unchanged"
  fi
fi

# --------------------------------------------------------------------------------------------------- config
write_config() {
  mkdir -p "$(dirname "$CONFIG")"
  cat >"$CONFIG" <<'EOF'
# ShelfSense site settings (written once by deploy/install.sh, never overwritten by it).
# Only what differs from the defaults; /opt/shelfsense/src/config.toml documents every setting.
# After a change: sudo systemctl restart shelfsense

[server]
host = "0.0.0.0"
port = 8080

[model]
path = "/opt/shelfsense/src/models/grocery_int8.tflite"
threads = 2                     # inference workers; a Pi 4/5 has 4 cores
interpreter_threads = 1

[cache]
disk_path = "/var/lib/shelfsense/cache"   # the service's StateDirectory; "" = memory only (no SD-card writes)

[record]
folder = "/var/lib/shelfsense/recordings"

# One table per camera; see the README ("Configuring cameras").
[cameras.shelf-1]
grid = { rows = 2, cols = 4 }
EOF
  chmod 0640 "$CONFIG"
  if user_exists && [[ -z $ROOT ]]; then chgrp "$USER_NAME" "$CONFIG"; fi
}
if [[ -f $CONFIG ]]; then
  note "$CONFIG: unchanged (kept; it is the site's file)"
else
  act "write $CONFIG" write_config
fi

# ----------------------------------------------------------------------------------------------------- unit
if cmp -s "$SOURCE/deploy/shelfsense.service" "$UNIT"; then
  note "$UNIT: unchanged"
else
  act "install $UNIT" install -D -m 0644 "$SOURCE/deploy/shelfsense.service" "$UNIT"
  UNIT_CHANGED=1
fi

if [[ -z $ROOT && -d /run/systemd/system ]]; then
  if ((${UNIT_CHANGED:-0})); then act "systemctl daemon-reload" systemctl daemon-reload; fi
  if ((START)); then
    if ! systemctl is-enabled --quiet shelfsense 2>/dev/null; then
      act "enable and start shelfsense" systemctl enable --now shelfsense
    elif ((SRC_CHANGED || ${UNIT_CHANGED:-0})); then
      act "restart shelfsense (new version)" systemctl restart shelfsense
    fi
  fi
else
  note "systemd is not running here: start it later with systemctl enable --now shelfsense"
fi

if ((CHANGES == 0)); then
  note "done: unchanged, nothing to do"
elif ((DRY)); then
  note "dry run: $CHANGES change(s) would be made"
else
  note "done: $CHANGES change(s); logs: journalctl -u shelfsense -f"
fi

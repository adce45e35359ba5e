#!/bin/bash
# Inside the emulated Pi OS, after deploy/install.sh: start the installed service the way its systemd unit does
# (user shelfsense, StateDirectory /var/lib/shelfsense, ExecStart from the unit) and have it answer a real frame.
# systemd itself does not run in a chroot; the unit file is checked by tests/test_deploy.py (systemd-analyze).
set -euo pipefail
unit=/etc/systemd/system/shelfsense.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit")
state=/var/lib/$(sed -n 's/^StateDirectory=//p' "$unit")
id "$user"
install -d -o "$user" -g "$user" -m 0750 "$state" # what StateDirectory= does
py=/opt/shelfsense/.venv/bin/python
port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cd "$state"
# setpriv execs the service itself (as systemd does), so $pid is the service and gets the SIGTERM below
# shellcheck disable=SC2086 # ExecStart is a command line
setpriv --reuid="$user" --regid="$user" --init-groups -- env HOME="$state" $exec_start --host 127.0.0.1 \
  --port "$port" 2>/tmp/serve.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
$py - "$port" /work/shared/images/hot_dog.jpg <<'PY'
import json, sys, time, urllib.request
port, image = int(sys.argv[1]), sys.argv[2]
url = f"http://127.0.0.1:{port}"
for _ in range(600):
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
            print("readyz", r.status, r.read().decode()[:200])
            break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("the installed service never became ready")
req = urllib.request.Request(url + "/v1/frames/shelf-1", data=open(image, "rb").read(),
                             headers={"Content-Type": "image/jpeg"})
with urllib.request.urlopen(req, timeout=300) as r:
    body = json.load(r)
print("frame", r.status, "slots", len(body["slots"]), "first:", body["slots"][0]["label"], body["slots"][0]["cache"])
assert r.status == 200 and len(body["slots"]) == 8
PY
kill -TERM $pid
code=0
wait $pid || code=$?
trap - EXIT
tail -n 3 /tmp/serve.log
[[ $code == 0 ]] || { echo "the service exited with $code on SIGTERM" >&2; exit 1; }
grep -q "stopped; disk cache $state/cache closed" /tmp/serve.log
echo "SIGTERM: exit 0, disk cache closed"
ls -la "$state"

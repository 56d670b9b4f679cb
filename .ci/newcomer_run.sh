#!/usr/bin/env bash
# A newcomer's first command: `make run` in a fresh clone (no `make test` before it), the login
# page answering, a demo login printed by it accepted, Ctrl-C, and no process of it left behind.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/portal-newcomer.XXXXXX)
clone="$work/portal"
log="$work/make-run.log"
git clone -q "$repo" "$clone"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

leftovers() {
  # Every process that runs from the clone or holds a file of it open.
  local pid
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$pid" = "$$" ] && continue
    { if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$clone" \
         || readlink "/proc/$pid/cwd" | grep -qF "$clone"; then
        echo "$pid $(tr '\0' ' ' < "/proc/$pid/cmdline")"
      fi; } 2>/dev/null
  done
}

cleanup() {
  local rest
  rest=$(leftovers | awk '{print $1}')
  [ -n "$rest" ] && kill -9 $rest 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Its own session, so that Ctrl-C can be sent to its process group as a terminal would.
( cd "$clone" && exec env -u DATABASE_URL -u REDIS_URL PORT="$port" setsid make run >"$log" 2>&1 ) &
make_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 600); do
  if grep -q "Ctrl-C stops everything" "$log" && curl -fsS -o /dev/null "$url/login" 2>/dev/null; then break; fi
  if ! kill -0 "$make_pid" 2>/dev/null; then echo "make run exited early:"; tail -n 40 "$log"; exit 1; fi
  sleep 1
done
curl -fsS -o /dev/null "$url/login" || { echo "no login page after 10 minutes:"; tail -n 40 "$log"; exit 1; }

password=$(sed -n 's/^Demo logins, password \(.*\):$/\1/p' "$log")
user=$(sed -n '/^Demo logins/{n;p;q}' "$log" | awk '{print $1}')
[ -n "$password" ] && [ -n "$user" ] || { echo "make run printed no demo login:"; cat "$log"; exit 1; }
"$clone/.venv/bin/python" - "$url" "$user" "$password" <<'PY'
import re, sys, urllib.parse, urllib.request
from http.cookiejar import CookieJar
url, user, password = sys.argv[1:]
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
page = opener.open(url + "/login").read().decode()
token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
body = urllib.parse.urlencode({"csrf_token": token, "username": user, "password": password}).encode()
answer = opener.open(url + "/login", body)
home = answer.read().decode()
assert answer.url.rstrip("/") != url + "/login" and "logout" in home.lower(), "login refused"
print(f"logged in as {user}: {answer.url}")
PY

running=$(leftovers)
echo "running from the clone:"; echo "$running" | cut -c1-160
for part in gunicorn " worker " " scheduler" redis-server; do
  echo "$running" | grep -qF -- "$part" || { echo "no $part process seen: the check below would see nothing"; exit 1; }
done

# make leads its own process group (setsid): Ctrl-C reaches every process of it.
kill -INT -- "-$make_pid"
for _ in $(seq 30); do kill -0 "$make_pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$make_pid" 2>/dev/null; then echo "make run still running 30 s after Ctrl-C"; exit 1; fi
sleep 1
rest=$(leftovers)
if [ -n "$rest" ]; then echo "left running after Ctrl-C:"; echo "$rest"; exit 1; fi
echo "make run: started, logged in, stopped with Ctrl-C, nothing left running"
sed -n '/^Batch approval portal on/,/^Ctrl-C stops everything/p' "$log"
grep -o 'stopped\.' "$log"

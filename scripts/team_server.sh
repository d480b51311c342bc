#!/usr/bin/env bash
# A team MLflow server on one box: a private PostgreSQL cluster on 127.0.0.1, and `mlflow server` on it with
# MLflow's basic-auth app and proxied artifacts (--artifacts-destination). For trying the team setup, CI,
# or a small lab; docs/team.md describes a real deployment (backups, S3 artifacts, users, many GPU boxes).
#
#   scripts/team_server.sh start    # create (first time) and start; prints the URL, admin login, client env
#   scripts/team_server.sh status   # is it up (the server it started: its PID, basic auth on); prints the same
#   scripts/team_server.sh stop     # stop both; data stays in $SAI_TEAM_DIR
# A port already held by another server is refused (exit 2): the script never reports a server it did not start.
#
# Settings (environment): SAI_TEAM_DIR (./team-server), SAI_TEAM_PORT (5000), SAI_TEAM_PG_PORT (5433),
# MLFLOW (the mlflow command; .venv/bin/mlflow if present). Secrets are generated once into
# $SAI_TEAM_DIR/secrets.env (mode 600). Only 127.0.0.1 is listened on.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=$(realpath -m "${SAI_TEAM_DIR:-team-server}")  # created by `start` only
PORT=${SAI_TEAM_PORT:-5000}
PG_PORT=${SAI_TEAM_PG_PORT:-5433}
HOST=127.0.0.1
PGDATA_DIR="$DIR/pg"
PG_USER=mlflow
if [ -z "${MLFLOW:-}" ]; then
  if [ -x .venv/bin/mlflow ]; then MLFLOW=.venv/bin/mlflow; else MLFLOW=mlflow; fi
fi

die() { echo "team_server: $*" >&2; exit 2; }

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(readlink -f "$(command -v initdb)")"; return; }
  command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && { pg_config --bindir; return; }
  die "PostgreSQL server binaries not found: install them (apt-get install -y postgresql) and run again"
}

as_pg() {  # initdb and the server refuse root: run them as the postgres user
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

secret() { od -An -tx1 -N18 /dev/urandom | tr -d ' \n'; }

init_once() {
  [ -f "$DIR/secrets.env" ] && return
  mkdir -p "$DIR"
  umask 077
  { echo "PG_PASSWORD=$(secret)"; echo "ADMIN_PASSWORD=$(secret)"; echo "FLASK_KEY=$(secret)"; } > "$DIR/secrets.env"
  umask 022
  # shellcheck disable=SC1091
  . "$DIR/secrets.env"
  mkdir -p "$PGDATA_DIR" "$DIR/artifacts"
  local pw="$PGDATA_DIR/.pw"
  printf '%s\n' "$PG_PASSWORD" > "$pw"
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- test -x "$DIR" || die "the postgres user cannot enter $DIR: set SAI_TEAM_DIR to a folder it can reach (e.g. /srv/mlflow)"
    chown -R postgres:postgres "$PGDATA_DIR"
  fi
  chmod 600 "$pw"
  as_pg "$BIN/initdb" -D "$PGDATA_DIR/data" -U "$PG_USER" --pwfile="$pw" --auth-host=scram-sha-256 \
    --auth-local=peer -E UTF8 >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pw"
  start_pg
  PGPASSWORD="$PG_PASSWORD" "$BIN/createdb" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" mlflow
  PGPASSWORD="$PG_PASSWORD" "$BIN/createdb" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" mlflow_auth
}

write_auth_ini() {  # every start: it follows the current ports
  # shellcheck disable=SC1091
  . "$DIR/secrets.env"
  umask 077
  cat > "$DIR/basic_auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = postgresql://$PG_USER@$HOST:$PG_PORT/mlflow_auth
admin_username = admin
admin_password = $ADMIN_PASSWORD
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
EOF
  chmod 600 "$DIR/basic_auth.ini"
  umask 022
}

pg_running() { as_pg "$BIN/pg_ctl" -D "$PGDATA_DIR/data" status >/dev/null 2>&1; }

start_pg() {
  pg_running && return
  as_pg "$BIN/pg_ctl" -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PGDATA_DIR -c listen_addresses=$HOST" start >/dev/null \
    || { tail -20 "$PGDATA_DIR/server.log" >&2; die "PostgreSQL did not start (port $PG_PORT in use?)"; }
}

health() {
  if command -v curl >/dev/null 2>&1; then curl -fsS -m 2 "http://$HOST:$PORT/health" >/dev/null 2>&1; return; fi
  python3 -c "import urllib.request as u; u.urlopen('http://$HOST:$PORT/health', timeout=2)" >/dev/null 2>&1
}

# the server this script started: its PID file names a live `mlflow` process (not a PID reused since)
mlflow_pid() {
  local pid
  [ -f "$DIR/mlflow.pid" ] || return 1
  pid=$(cat "$DIR/mlflow.pid")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q mlflow && echo "$pid"
}

# PIDs listening on $PORT (from /proc); exit 0: one is in session $1 (the server we started, setsid), 1: all
# are other processes, 3: no listener seen (or not ours to see)
port_owners() {
  python3 - "$PORT" "${1:-0}" <<'PY'
import os, sys
port, sid = int(sys.argv[1]), int(sys.argv[2])
inodes = set()
for name in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        rows = open(name).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        f = row.split()
        if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{f[9]}]")
owners = set()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
            owners.add(int(pid))
    except OSError:
        pass
def session(pid):
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[3])
print(" ".join(map(str, sorted(owners))))
sys.exit(0 if any(session(p) == sid for p in owners) else 1 if owners else 3)
PY
}

http_code() {  # the HTTP status of GET $1 on the server at $PORT, with login $2 (user:password) if given
  python3 - "http://$HOST:$PORT$1" "${2:-}" <<'PY'
import base64, sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    req.add_header("Authorization", "Basic " + base64.b64encode(sys.argv[2].encode()).decode())
try:
    print(urllib.request.urlopen(req, timeout=3).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print("000")
PY
}

# Is the server answering on $PORT the one this script started? Its PID holds the port, it asks for a login
# (basic auth), and it takes this script's admin login. Prints why not.
verify_ours() {
  local pid owners code api="/api/2.0/mlflow/experiments/search?max_results=1"
  pid=$(mlflow_pid || true)
  [ -n "$pid" ] || { echo "no server started by this script (in $DIR) is running"; return 1; }
  owners=$(port_owners "$pid") && true
  case $? in
    1) echo "port $PORT is held by another process (pid $owners), not the server this script started (pid $pid)"
       return 1 ;;
  esac
  code=$(http_code "$api")
  if [ "$code" != 401 ]; then
    echo "the server on port $PORT answers without a login (HTTP $code): basic auth is off, so it is not the" \
      "server this script started"
    return 1
  fi
  # shellcheck disable=SC1091
  . "$DIR/secrets.env"
  code=$(http_code "$api" "admin:$ADMIN_PASSWORD")
  if [ "$code" != 200 ]; then
    echo "the server on port $PORT refuses this script's admin login (HTTP $code): it is not the server this" \
      "script started"
    return 1
  fi
}

port_taken() {  # something listens or answers on $PORT; prints what
  local owners
  owners=$(port_owners 0) && true
  if [ -n "$owners" ]; then echo "pid $owners"; return 0; fi
  health && { echo "an MLflow server"; return 0; }
  return 1
}

print_env() {
  # shellcheck disable=SC1091
  . "$DIR/secrets.env"
  cat <<EOF
MLflow server: http://$HOST:$PORT   (basic auth; PostgreSQL on $HOST:$PG_PORT; artifacts in $DIR/artifacts)
admin login:   admin / $ADMIN_PASSWORD   (kept in $DIR/secrets.env; add users as in docs/team.md)
client environment:
export MLFLOW_TRACKING_URI=http://$HOST:$PORT
export MLFLOW_TRACKING_USERNAME=admin
export MLFLOW_TRACKING_PASSWORD=$ADMIN_PASSWORD
EOF
}

start() {
  local why taken
  if [ -z "$(mlflow_pid || true)" ] && taken=$(port_taken); then
    die "port $PORT is already held by another server ($taken), not one this script started: stop it, or set" \
      "SAI_TEAM_PORT to a free port; nothing was started"
  fi
  init_once
  # shellcheck disable=SC1091
  . "$DIR/secrets.env"
  start_pg
  write_auth_ini
  if [ -z "$(mlflow_pid || true)" ]; then
    # the database password goes by PGPASSWORD (libpq), never on a command line that `ps` shows
    PGPASSWORD="$PG_PASSWORD" MLFLOW_AUTH_CONFIG_PATH="$DIR/basic_auth.ini" MLFLOW_FLASK_SERVER_SECRET_KEY="$FLASK_KEY" \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid nohup "$MLFLOW" server --app-name basic-auth \
      --backend-store-uri "postgresql://$PG_USER@$HOST:$PG_PORT/mlflow" \
      --artifacts-destination "$DIR/artifacts" --host "$HOST" --port "$PORT" --workers 1 \
      >>"$DIR/mlflow.log" 2>&1 < /dev/null &
    echo $! > "$DIR/mlflow.pid"
  fi
  for _ in $(seq 240); do
    if health; then
      why=$(verify_ours) || die "$why; nothing was started (log: $DIR/mlflow.log)"
      print_env
      return
    fi
    mlflow_pid >/dev/null || { tail -20 "$DIR/mlflow.log" >&2; die "mlflow server exited (log: $DIR/mlflow.log)"; }
    sleep 0.5
  done
  die "mlflow server did not answer on http://$HOST:$PORT/health within 120 s (log: $DIR/mlflow.log)"
}

stop() {
  local pid
  if [ ! -f "$DIR/secrets.env" ]; then
    echo "nothing to stop: no team server was started in $DIR (start one with: $0 start)"
    return
  fi
  pid=$(mlflow_pid || true)
  [ -n "$pid" ] || echo "no mlflow server started by this script is running (in $DIR)"
  if [ -n "$pid" ]; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/mlflow.pid"
  if [ -d "$PGDATA_DIR/data" ] && pg_running; then
    as_pg "$BIN/pg_ctl" -D "$PGDATA_DIR/data" -m fast -w stop >/dev/null
  fi
  echo "stopped (data kept in $DIR)"
}

status() {
  [ -f "$DIR/secrets.env" ] || { echo "not created yet: scripts/team_server.sh start"; exit 1; }
  local up=0
  pg_running && echo "postgresql: running on $HOST:$PG_PORT" || { echo "postgresql: stopped"; up=1; }
  local why
  if ! health; then
    echo "mlflow server: down"; up=1
  elif why=$(verify_ours); then
    echo "mlflow server: up (pid $(mlflow_pid))"
  else
    echo "mlflow server: not this script's: $why"; up=1
  fi
  [ "$up" = 0 ] && print_env
  exit "$up"
}

BIN=$(pg_bindir)
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

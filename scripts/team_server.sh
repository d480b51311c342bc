#!/usr/bin/env bash
# A team MLflow server on one box: a private PostgreSQL cluster on 127.0.0.1, and `mlflow server` on it with
# MLflow's basic-auth app and proxied artifacts (--artifacts-destination). For trying the team setup, CI,
# or a small lab; docs/team.md describes a real deployment (backups, S3 artifacts, users, many GPU boxes).
#
#   scripts/team_server.sh start    # create (first time) and start; prints the URL, admin login, client env
#   scripts/team_server.sh status   # is it up; prints the same
#   scripts/team_server.sh stop     # stop both; data stays in $SAI_TEAM_DIR
#
# Settings (environment): SAI_TEAM_DIR (./team-server), SAI_TEAM_PORT (5000), SAI_TEAM_PG_PORT (5433),
# MLFLOW (the mlflow command; .venv/bin/mlflow if present). Secrets are generated once into
# $SAI_TEAM_DIR/secrets.env (mode 600). Only 127.0.0.1 is listened on.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=$(mkdir -p "${SAI_TEAM_DIR:-team-server}" && cd "${SAI_TEAM_DIR:-team-server}" && pwd)
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

mlflow_pid() { [ -f "$DIR/mlflow.pid" ] && kill -0 "$(cat "$DIR/mlflow.pid")" 2>/dev/null && cat "$DIR/mlflow.pid"; }

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
    health && { print_env; return; }
    mlflow_pid >/dev/null || { tail -20 "$DIR/mlflow.log" >&2; die "mlflow server exited (log: $DIR/mlflow.log)"; }
    sleep 0.5
  done
  die "mlflow server did not answer on http://$HOST:$PORT/health within 120 s (log: $DIR/mlflow.log)"
}

stop() {
  local pid
  pid=$(mlflow_pid || true)
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
  health && echo "mlflow server: up" || { echo "mlflow server: down"; up=1; }
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

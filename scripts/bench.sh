#!/usr/bin/env bash
# make bench: measure Myelin and refresh docs/performance.md.
#
# Builds myelin and myelin-load, then for each engine (SQLite, then a
# throwaway PostgreSQL 15 cluster) starts a fresh server RUNS times and runs
# the load tool's default workload against it with --pid and --disk, then
# runs the Go benchmarks, and finally renders docs/performance.md with
# `myelin-load report` (medians over the runs, judged against the targets).
# A scenario or engine that fails is reported as failed with its error.
#
# Bounded: each load run stops after LOAD_MAX, the Go benchmarks after
# BENCH_TIMEOUT, and runs that would overrun TOTAL_BUDGET are skipped (and
# said so in the page). Only processes this script started are stopped.
#
# Environment (all optional):
#   RUNS=3             load runs per engine (the acceptance figure is the median of 3)
#   LOAD_MAX=80s       --max-duration of one load run
#   BENCHTIME=500ms    go test -benchtime
#   BENCH_TIMEOUT=150  seconds for the whole go test -bench
#   TOTAL_BUDGET=840   seconds for the whole script (stays under 15 minutes)
#   ENGINES="sqlite postgres"
#   LOAD_FLAGS=""      extra myelin-load flags (e.g. "--messages 500")
#   DURABILITY=full    database.durability of the servers; "relaxed" labels every figure
#   OUT=docs/performance.md
set -euo pipefail

cd "$(dirname "$0")/.."
START=$SECONDS
RUNS=${RUNS:-3}
LOAD_MAX=${LOAD_MAX:-80s}
BENCHTIME=${BENCHTIME:-500ms}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-150}
TOTAL_BUDGET=${TOTAL_BUDGET:-840}
ENGINES=${ENGINES:-sqlite postgres}
LOAD_FLAGS=${LOAD_FLAGS:-}
DURABILITY=${DURABILITY:-full}
OUT=${OUT:-docs/performance.md}
PGBIN=/usr/lib/postgresql/15/bin
GO=${GO:-go}

WORK=$(mktemp -d /tmp/myelin-bench-XXXXXX)
SERVER_PID=""
PGDATA=""
PGROOT=""
NOTES=()

log() { printf 'bench: %s\n' "$*" >&2; }
# Notes go to the page; '|' separates them on the report's command line.
note() { NOTES+=("${*//|//}"); log "note: $*"; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

stop_postgres() {
  [ -n "$PGDATA" ] || return 0
  as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  PGDATA=""
}

cleanup() {
  stop_server
  stop_postgres
  rm -rf "$WORK"
  [ -z "$PGROOT" ] || rm -rf "$PGROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

remaining() { echo $((TOTAL_BUDGET - (SECONDS - START))); }

# Seconds kept back for the Go benchmarks and the report.
RESERVE=$((BENCH_TIMEOUT + 30))

log "building myelin and myelin-load"
# Static, as `make build` builds it (see the Makefile).
CGO_ENABLED=0 $GO build -o "$WORK/myelin" ./cmd/myelin
$GO build -o "$WORK/myelin-load" ./cmd/myelin-load

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  COMMIT="$COMMIT (+ uncommitted changes in the work tree)"
fi

# start_server CONFIG LOG: starts myelin, waits for its listening line, sets
# SERVER_PID and SERVER_URL. The client listener is on port 0 so the kernel
# picks a free port and no other process can race us for it.
start_server() {
  local config=$1 logf=$2
  "$WORK/myelin" serve --config "$config" >"$logf" 2>&1 &
  SERVER_PID=$!
  SERVER_URL=""
  for _ in $(seq 300); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID" 2>/dev/null || true
      SERVER_PID=""
      return 1
    fi
    # The line is logged once the socket is bound (connections queue in
    # its backlog until Serve runs), so it is the readiness signal.
    local addr
    addr=$(grep -o 'msg="client API listening" addr=127\.0\.0\.1:[0-9]*' "$logf" | head -1 | sed 's/.*addr=//')
    if [ -n "$addr" ]; then
      SERVER_URL="http://$addr"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

write_config() { # FILE DATA_DIR ENGINE DSN
  cat >"$1" <<EOF
# Written by scripts/bench.sh for one throwaway bench run.
server_name: localhost
data_dir: $2
listeners:
  client: 127.0.0.1:0
  federation: ""
database:
  engine: $3
  dsn: "$4"
  durability: $DURABILITY
registration:
  enabled: true
auth:
  # bcrypt at cost 12 would make the register scenario measure bcrypt.
  password_hash_cost: 4
rate_limits:
  enabled: false
logging:
  level: info
  format: text
EOF
}

# one_run ENGINE N DSN DISK_DIR DATA_DIR: a fresh server, one load run.
one_run() {
  local engine=$1 n=$2 dsn=$3 disk=$4 data=$5
  local left=$(( $(remaining) - RESERVE ))
  if [ "$left" -lt 30 ]; then
    note "$engine run $n skipped: the ${TOTAL_BUDGET}s budget of scripts/bench.sh was spent."
    return 0
  fi
  local max=${LOAD_MAX%s}
  [ "$max" -gt "$left" ] && max=$left
  mkdir -p "$data"
  local config="$WORK/$engine-$n.yaml" logf="$WORK/$engine-$n.log" out="$WORK/$engine-$n.jsonl"
  write_config "$config" "$data" "$engine" "$dsn"
  if ! start_server "$config" "$logf"; then
    note "$engine run $n: the server did not start: $(tail -n 3 "$logf" | tr '\n' ' ' | cut -c1-300)"
    stop_server
    return 0
  fi
  [ -n "$disk" ] || disk=$data
  log "$engine run $n/$RUNS: $SERVER_URL (pid $SERVER_PID), --max-duration ${max}s"
  # shellcheck disable=SC2086 # LOAD_FLAGS is a list of flags
  if ! "$WORK/myelin-load" --url "$SERVER_URL" --server "myelin-$engine" --durability "$DURABILITY" --pid "$SERVER_PID" \
      --disk "$disk" --max-duration "${max}s" --out "$out" $LOAD_FLAGS >/dev/null 2>"$WORK/$engine-$n.load.log"; then
    note "$engine run $n: myelin-load failed: $(tail -n 2 "$WORK/$engine-$n.load.log" | tr '\n' ' ' | cut -c1-300)"
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    note "$engine run $n: the server exited during the load: $(tail -n 3 "$logf" | tr '\n' ' ' | cut -c1-300)"
  fi
  stop_server
  [ -s "$out" ] && RESULTS+=("$out")
  return 0
}

SQLITE_FILES=""
PG_FILES=""

for engine in $ENGINES; do
  RESULTS=()
  case $engine in
  sqlite)
    for n in $(seq "$RUNS"); do
      one_run sqlite "$n" myelin.db "" "$WORK/sqlite-data-$n"
    done
    SQLITE_FILES=$(IFS=,; echo "${RESULTS[*]:-}")
    ;;
  postgres)
    if [ ! -x "$PGBIN/initdb" ]; then
      ./scripts/ensure-postgres.sh >&2 || true
    fi
    if [ ! -x "$PGBIN/initdb" ]; then
      note "PostgreSQL: not run, $PGBIN/initdb is missing and could not be installed."
      continue
    fi
    # Its own temp dir: $WORK is private to us, and the cluster runs as
    # the postgres user when we are root.
    PGROOT=$(mktemp -d /tmp/myelin-bench-pg-XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGROOT"
    if ! as_postgres "$PGBIN/initdb" -D "$PGROOT/data" -U postgres -A trust -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1; then
      note "PostgreSQL: initdb failed: $(tail -n 2 "$WORK/initdb.log" | tr '\n' ' ')"
      continue
    fi
    # A free port: try a few random ones; pg_ctl fails on a taken one.
    PGPORT=""
    for _ in $(seq 10); do
      port=$((20000 + RANDOM % 40000))
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
      # fsync stays on: the figures are for durable commits.
      if as_postgres "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/log" -w -t 60 \
          -o "-h 127.0.0.1 -p $port -k $PGROOT -c max_connections=100" start >/dev/null 2>&1; then
        PGPORT=$port
        PGDATA="$PGROOT/data"
        break
      fi
    done
    if [ -z "$PGPORT" ]; then
      note "PostgreSQL: the throwaway cluster did not start: $(tail -n 3 "$PGROOT/log" 2>/dev/null | tr '\n' ' ')"
      continue
    fi
    log "PostgreSQL 15 cluster on 127.0.0.1:$PGPORT"
    for n in $(seq "$RUNS"); do
      db="bench_$n"
      if ! "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -qc "CREATE DATABASE $db" >/dev/null 2>"$WORK/createdb.log"; then
        note "postgres run $n: CREATE DATABASE failed: $(tr '\n' ' ' <"$WORK/createdb.log")"
        continue
      fi
      one_run postgres "$n" "postgres://postgres@127.0.0.1:$PGPORT/$db?sslmode=disable" "$PGDATA/base" "$WORK/pg-data-$n"
    done
    stop_postgres
    PG_FILES=$(IFS=,; echo "${RESULTS[*]:-}")
    ;;
  *)
    note "unknown engine $engine in ENGINES"
    ;;
  esac
done

log "Go benchmarks (-benchtime=$BENCHTIME, at most ${BENCH_TIMEOUT}s)"
BENCH_OUT="$WORK/bench.txt"
BENCH_EXIT=0
timeout --kill-after=10 "$BENCH_TIMEOUT" $GO test -run='^$' -bench=. -benchtime="$BENCHTIME" -timeout="${BENCH_TIMEOUT}s" ./... >"$BENCH_OUT" 2>&1 || BENCH_EXIT=$?
if [ "$BENCH_EXIT" = 124 ]; then
  note "Go benchmarks stopped after ${BENCH_TIMEOUT}s (BENCH_TIMEOUT); the list below is incomplete."
fi

note "Server CPU is the myelin process only; on PostgreSQL the database's own CPU is not included."
note "Server config: auth.password_hash_cost 4, rate limits off, registration open; all else default."

# The label in the page: anything but full is named in every column and
# section heading (myelin-load report).
if [ "$DURABILITY" = full ]; then
  DURABILITY_LABEL="the defaults (database.durability: full — every commit fsynced, group commit)"
else
  DURABILITY_LABEL=$DURABILITY
fi

NOTE_ARG=$(IFS='|'; echo "${NOTES[*]}")
"$WORK/myelin-load" report --out "$OUT" --commit "$COMMIT" --durability "$DURABILITY_LABEL" \
  --sqlite "$SQLITE_FILES" --postgres "$PG_FILES" --bench "$BENCH_OUT" --bench-exit "$BENCH_EXIT" --note "$NOTE_ARG"
log "done in $((SECONDS - START))s: $OUT"

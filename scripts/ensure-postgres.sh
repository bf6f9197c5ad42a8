#!/usr/bin/env bash
# Makes sure Debian's PostgreSQL 15 server binaries are present for the test
# suite's throwaway clusters (internal/pgtest runs initdb + pg_ctl itself; no
# system service is started or needed). Installs the package if missing.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
if [ -x "$BIN/initdb" ] && [ -x "$BIN/pg_ctl" ]; then
  echo "postgres: PostgreSQL 15 found in $BIN"
  exit 0
fi
if [ -n "${MYELIN_TEST_POSTGRES:-}" ]; then
  echo "postgres: using MYELIN_TEST_POSTGRES; no local install needed"
  exit 0
fi
echo "postgres: PostgreSQL 15 not found in $BIN — installing Debian's postgresql-15 package"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "postgres: not root and no sudo; install postgresql-15 or set MYELIN_TEST_POSTGRES" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql-15 >/dev/null
echo "postgres: installed $("$BIN/postgres" --version)"

#!/usr/bin/env bash
# Start a local PostgreSQL for the codepilot-store tests (Debian 12, run as root). Idempotent.
#
# - installs the `postgresql` package if no server is installed (apt-get update first),
# - starts the cluster of the newest installed major version (creating `main` if it is missing),
# - creates the role `root` (superuser) and the database `codepilot_test` afresh (dropped first if it exists: a run
#   never sees tables or migrations an earlier run — of another branch, say — left behind),
# - prints the URL to put in CODEPILOT_TEST_PG_URL as the LAST line of stdout.
#
# Usage: export CODEPILOT_TEST_PG_URL="$(bash .ci/postgres.sh | tail -n 1)"
set -euo pipefail

DB="${CODEPILOT_TEST_PG_DB:-codepilot_test}"
SOCKET_DIR=/var/run/postgresql

log() { echo "postgres.sh: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs packages and starts the cluster)"
    exit 1
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if [ -z "$VERSION" ]; then
    log "no PostgreSQL server found under /usr/lib/postgresql after install"
    exit 1
fi

if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main"' | grep -q .; then
    log "creating cluster $VERSION/main"
    pg_createcluster "$VERSION" main >&2
fi

if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    log "starting cluster $VERSION/main"
    pg_ctlcluster "$VERSION" main start >&2
fi

# Wait until the server accepts connections (generous: the machine is shared).
for _ in $(seq 1 60); do
    if runuser -u postgres -- pg_isready -q -h "$SOCKET_DIR"; then
        break
    fi
    sleep 1
done
runuser -u postgres -- pg_isready -h "$SOCKET_DIR" >&2

psql_pg() { runuser -u postgres -- psql -h "$SOCKET_DIR" -v ON_ERROR_STOP=1 -tAq "$@"; }

if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname = 'root'")" != "1" ]; then
    log "creating role root"
    runuser -u postgres -- createuser -h "$SOCKET_DIR" -s root
fi

if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" = "1" ]; then
    log "dropping database $DB left by an earlier run"
    psql_pg -c "DROP DATABASE \"$DB\" WITH (FORCE)"
fi
log "creating database $DB"
runuser -u postgres -- createdb -h "$SOCKET_DIR" -O root "$DB"

echo "postgres://root@localhost/$DB?host=$SOCKET_DIR"

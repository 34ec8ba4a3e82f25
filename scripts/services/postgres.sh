#!/usr/bin/env bash
# Throwaway PostgreSQL 15 for the test suite, on a free loopback port.
#
#   . scripts/services/postgres.sh    # starts it unless DATABASE_URL is already set,
#                                     # exports DATABASE_URL, defines castle_postgres_stop
#   castle_postgres_stop              # stops it (scripts/test calls it at exit)
#
# initdb refuses to run as root, so as root the cluster belongs to user `postgres`
# (a temporary directory owned by it). Missing binaries stop the run naming the package.

# The settlement ledger's server settings (same as settlement/src/testkit/pg.rs
# SERVER_SETTINGS; see ARCHITECTURE.md "Settlement" for why and for Aurora's parameter
# group; settlement/tests/pg_settings.rs checks the two agree). fsync, synchronous_commit and
# full_page_writes stay on.
CASTLE_PG_SETTINGS="-c shared_buffers=256MB -c wal_buffers=32MB -c min_wal_size=1GB -c max_wal_size=2GB \
    -c checkpoint_timeout=15min -c backend_flush_after=256kB \
    -c wal_compression=lz4"

castle_postgres_stop() {
    if [ -n "${CASTLE_PG_DIR:-}" ] && [ -d "$CASTLE_PG_DIR/data" ]; then
        ${CASTLE_PG_AS:-} "$CASTLE_PG_BIN/pg_ctl" -D "$CASTLE_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$CASTLE_PG_DIR"
    fi
}

castle_postgres_start() {
    if [ -n "${DATABASE_URL:-}" ]; then
        echo "postgres: using DATABASE_URL"
        return 0
    fi
    CASTLE_PG_BIN=""
    for v in 15 16 17; do
        if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then
            CASTLE_PG_BIN="/usr/lib/postgresql/$v/bin"
            break
        fi
    done
    if [ -z "$CASTLE_PG_BIN" ]; then
        echo "scripts/services/postgres.sh: PostgreSQL server binaries are missing: apt-get install postgresql-15" >&2
        return 1
    fi
    CASTLE_PG_DIR=$(mktemp -d /tmp/castle-pg.XXXXXX)
    CASTLE_PG_AS=""
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$CASTLE_PG_DIR"
        # runuser lives in /usr/sbin, which a minimal PATH may lack.
        CASTLE_PG_AS="$(command -v runuser || echo /usr/sbin/runuser) -u postgres --"
    fi
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    $CASTLE_PG_AS "$CASTLE_PG_BIN/initdb" -D "$CASTLE_PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null ||
        return 1
    $CASTLE_PG_AS "$CASTLE_PG_BIN/pg_ctl" -D "$CASTLE_PG_DIR/data" -l "$CASTLE_PG_DIR/data/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$CASTLE_PG_DIR/data -c max_connections=300 \
            $CASTLE_PG_SETTINGS" \
        start >/dev/null || return 1
    export CASTLE_PG_BIN CASTLE_PG_DIR CASTLE_PG_AS
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "postgres: started on 127.0.0.1:$port ($CASTLE_PG_DIR)"
}

castle_postgres_start

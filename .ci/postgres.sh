#!/usr/bin/env bash
# A private PostgreSQL server for the relay's PostgreSQL tests (crates/sealpost-relay/src/store/
# postgres), on 127.0.0.1 with a free port, its data in a temporary directory.
#
#   eval "$(.ci/postgres.sh start)"   # installs PostgreSQL from Debian packages if missing,
#                                     # starts the server, creates the database and prints
#                                     # `export SEALPOST_TEST_POSTGRES=postgres://...`
#   .ci/postgres.sh stop              # stops it and deletes its directory
#   .ci/postgres.sh url               # prints the URL of the running server
#   .ci/postgres.sh crash             # stops it abruptly (immediate mode: no checkpoint, crash
#                                     # recovery at the next start), keeping its data
#   .ci/postgres.sh resume            # starts the crashed server again on the same port
#   (crash/resume only on a server nothing else uses: give it its own SEALPOST_PG_DIR)
#
# Works as root (the server runs as the `postgres` user, which the Debian package creates)
# and as a normal user. Authentication is `trust` for the superuser `sealpost`, on loopback
# only: a test server, never a deployment. The state lives in $SEALPOST_PG_DIR (default
# ${TMPDIR:-/tmp}/sealpost-postgres). fsync stays on: the store refuses a server without it.
set -euo pipefail

dir="${SEALPOST_PG_DIR:-${TMPDIR:-/tmp}/sealpost-postgres}"
db_name=sealpost_test
db_user=sealpost

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local d
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/pg_ctl" && -x "$d/initdb" ]]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

install_postgres() {
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            log "PostgreSQL is not installed and installing it needs root (no sudo)"
            exit 1
        fi
    fi
    log "installing PostgreSQL from the Debian packages"
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq postgresql >&2
}

# Runs a server binary as the user that owns the cluster.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The first port from $1 (default 54320) up to 54420 that nothing listens on. Another server
# starting at the same moment may take it first: `start` then tries the next one.
free_port() {
    local port
    for port in $(seq "${1:-54320}" 54420); do
        if ! (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    log "no free port in ${1:-54320}..54420"
    exit 1
}

url() {
    echo "postgres://${db_user}@127.0.0.1:$(cat "$dir/port")/${db_name}"
}

start() {
    local bin port
    if [[ -f "$dir/port" ]] && "$(find_bindir)/pg_isready" -q -h 127.0.0.1 -p "$(cat "$dir/port")" 2>/dev/null; then
        log "already running"
        echo "export SEALPOST_TEST_POSTGRES=$(url)"
        return 0
    fi
    bin="$(find_bindir)" || { install_postgres; bin="$(find_bindir)"; }
    if [[ "$(id -u)" == 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres "$dir"
    fi
    chmod 700 "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U "$db_user" -A trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    port="$(free_port)"
    local tries=0
    until as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "$(server_options "$port")" start >&2; do
        tries=$((tries + 1))
        # Lost the port to a server started at the same time: the next free one.
        if ((tries < 10)) && grep -q "could not bind\|Address already in use" "$dir/server.log"; then
            log "port $port was taken meanwhile; trying another"
            port="$(free_port $((port + 1)))"
            continue
        fi
        cat "$dir/server.log" >&2
        exit 1
    done
    echo "$port" > "$dir/port"
    "$bin/psql" -q -h 127.0.0.1 -p "$port" -U "$db_user" -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE ${db_name}" >&2
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
    echo "export SEALPOST_TEST_POSTGRES=$(url)"
}

stop() {
    local bin
    if [[ ! -d "$dir/data" ]]; then
        return 0
    fi
    bin="$(find_bindir)"
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

server_options() {
    echo "-c listen_addresses=127.0.0.1 -p $1 -k $dir -c max_connections=300 -c fsync=on -c synchronous_commit=on"
}

crash() {
    as_owner "$(find_bindir)/pg_ctl" -D "$dir/data" -m immediate -w stop >&2
}

resume() {
    as_owner "$(find_bindir)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "$(server_options "$(cat "$dir/port")")" start >&2
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    crash) crash ;;
    resume) resume ;;
    *) echo "usage: $0 start|stop|url|crash|resume" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A private NATS server for the relay's multi-node tests (cross-node wake-ups, spec/relay.md
# section 8), on 127.0.0.1 with a free port, its state in a temporary directory.
#
#   eval "$(.ci/nats.sh start)"   # installs nats-server from Debian packages if missing,
#                                 # starts it and prints `export SEALPOST_TEST_NATS=nats://...`
#   .ci/nats.sh stop              # stops it and deletes its directory
#   .ci/nats.sh url               # prints the URL of the running server
#
# Core pub/sub only (no JetStream), no authentication, loopback only: a test server, never a
# deployment. The state lives in $SEALPOST_NATS_DIR (default ${TMPDIR:-/tmp}/sealpost-nats).
set -euo pipefail

dir="${SEALPOST_NATS_DIR:-${TMPDIR:-/tmp}/sealpost-nats}"

log() { echo "nats.sh: $*" >&2; }

install_nats() {
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            log "nats-server is not installed and installing it needs root (no sudo)"
            exit 1
        fi
    fi
    log "installing nats-server from the Debian packages"
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq nats-server >&2
}

free_port() {
    local port
    for port in $(seq 42220 42320); do
        if ! (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    log "no free port in 42220..42320"
    exit 1
}

url() {
    echo "nats://127.0.0.1:$(cat "$dir/port")"
}

running() {
    [[ -f "$dir/pid" ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null
}

start() {
    local port i
    if running; then
        log "already running"
        echo "export SEALPOST_TEST_NATS=$(url)"
        return 0
    fi
    command -v nats-server >/dev/null 2>&1 || install_nats
    rm -rf "$dir"
    mkdir -p "$dir"
    port="$(free_port)"
    nats-server -a 127.0.0.1 -p "$port" -P "$dir/pid" -l "$dir/server.log" >/dev/null 2>&1 &
    for i in $(seq 1 100); do
        if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port" > "$dir/port"
            log "$(nats-server --version) on 127.0.0.1:$port, log in $dir/server.log"
            echo "export SEALPOST_TEST_NATS=$(url)"
            return 0
        fi
        sleep 0.1
    done
    cat "$dir/server.log" >&2 || true
    log "nats-server did not start"
    exit 1
}

stop() {
    if running; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        for _ in $(seq 1 50); do
            running || break
            sleep 0.1
        done
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Starts the reference sync server (@livestore/sync-cf@0.3.1 under `wrangler dev`) offline on loopback.
#
#   bench/reference/start.sh [PORT] [PERSIST_DIR]
#
# PORT defaults to 8787. D1 and Durable Object state go to PERSIST_DIR (default: a new temporary directory,
# deleted on exit). Telemetry is off and nothing is deployed. Prints `ready http://127.0.0.1:PORT` once
# `GET /` answers, then stays in the foreground until wrangler exits; SIGTERM / SIGINT stop wrangler too.
# Run `npm ci` in this directory first.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${1:-8787}"
PERSIST_DIR="${2:-}"
READY_TIMEOUT="${READY_TIMEOUT:-90}"

if [ ! -x "$HERE/node_modules/.bin/wrangler" ]; then
  echo "wrangler is not installed: run 'npm ci' in $HERE" >&2
  exit 3
fi

CLEANUP_DIR=""
if [ -z "$PERSIST_DIR" ]; then
  PERSIST_DIR="$(mktemp -d -t livestore-reference.XXXXXX)"
  CLEANUP_DIR="$PERSIST_DIR"
fi

# wrangler dev's proxy workerd holds ~9 file descriptors per WebSocket: under a 20,000 limit it dies with
# "accept: Too many open files" near 3,000 sockets. Raise the limit where that is permitted.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

export WRANGLER_SEND_METRICS=false
export WRANGLER_LOG="${WRANGLER_LOG:-warn}"
export CLOUDFLARE_API_TOKEN=""  # local mode needs no account; never log in
export NO_UPDATE_NOTIFIER=1
export CI=true                  # no interactive prompts, no hotkeys

cd "$HERE"
# Miniflare fetches a `Request.cf` sample from the internet unless a fresh copy (< 30 days) is cached here;
# give it its own placeholder so nothing leaves the machine.
mkdir -p node_modules/.mf && cp request-cf.json node_modules/.mf/cf.json

npx --no-install wrangler dev \
  --ip 127.0.0.1 --port "$PORT" \
  --persist-to "$PERSIST_DIR" \
  --inspector-port 0 \
  --show-interactive-dev-session=false &
WRANGLER_PID=$!

# npx -> sh -> node (wrangler) -> workerd, esbuild: a signal to npx alone leaves wrangler running, so stop
# the whole tree (wrangler shuts its workerd down on SIGTERM; whatever is left after 10 s is killed).
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    descendants "$child"
    echo "$child"
  done
}
alive() {
  local pid
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then return 0; fi
  done
  return 1
}
stop() {
  trap - TERM INT EXIT
  local pids
  pids="$(descendants "$WRANGLER_PID") $WRANGLER_PID"
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 50); do
    alive $pids || break
    sleep 0.2
  done
  kill -KILL $pids 2>/dev/null || true
  wait "$WRANGLER_PID" 2>/dev/null || true
  if [ -n "$CLEANUP_DIR" ]; then rm -rf "$CLEANUP_DIR"; fi
}
trap 'stop; exit 143' TERM INT
trap 'stop' EXIT

deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/" 2>/dev/null; do
  if ! kill -0 "$WRANGLER_PID" 2>/dev/null; then
    echo "wrangler dev exited before serving" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "wrangler dev did not answer GET / within ${READY_TIMEOUT}s" >&2
    exit 1
  fi
  sleep 0.2
done
echo "ready http://127.0.0.1:$PORT"
wait "$WRANGLER_PID"

#!/usr/bin/env bash
# Installs the programs nuthatch's tests and `make run` need, from Debian's
# packages, when they are missing. Idempotent; needs root (or sudo) only when
# something is missing.
set -euo pipefail

# node_clients installs test/clients/node's locked npm packages (the Node
# clients of the client matrix) unless node_modules already matches the
# lockfile (npm writes node_modules/.package-lock.json on install).
node_clients() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../clients/node" && pwd)"
  if [ -f "$dir/node_modules/.package-lock.json" ] &&
     [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ] &&
     (cd "$dir" && node -e 'for (const m of ["redis4","redis6","ioredis5","ioredis6","memcached","bullmq","ioredis"]) require.resolve(m)') 2>/dev/null; then
    return 0
  fi
  echo "deps: npm ci in $dir" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

# program -> Debian package
declare -A want=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [redis-benchmark]=redis-tools
  [memcached]=memcached
  [redis-sentinel]=redis-sentinel
  [nutcracker]=nutcracker
  [memcslap]=libmemcached-tools
  # test/nspawn boots a Debian root under systemd-nspawn; test/packaging
  # checks the packages with lintian and rpm.
  [systemd-nspawn]=systemd-container
  [debootstrap]=debootstrap
  [lintian]=lintian
  [rpm]=rpm
  # pkg/stats checks /metrics with promtool; test/process activates
  # sockets with systemd-socket-activate.
  [promtool]=prometheus
  [systemd-socket-activate]=systemd
  # make bench's TLS group puts stunnel4 and HAProxy in front of nutcracker
  # (the usual TLS workarounds), as anchors.
  [stunnel4]=stunnel4
  [haproxy]=haproxy
)
missing=()
for prog in "${!want[@]}"; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("${want[$prog]}")
done
# `memcslap` is installed as memcslap or libmemcached-memcslap depending on the release.
if [[ " ${missing[*]-} " == *" libmemcached-tools "* ]] && command -v libmemcached-memcslap >/dev/null 2>&1; then
  missing=("${missing[@]/libmemcached-tools}")
fi
# test/integration's client matrix runs Debian's redis-py and pymemcache
# under Debian's own /usr/bin/python3 (a python3 earlier on PATH may be
# another build without them), and Node clients from npm.
for mod in redis:python3-redis pymemcache:python3-pymemcache; do
  /usr/bin/python3 -c "import ${mod%%:*}" >/dev/null 2>&1 || missing+=("${mod#*:}")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
mapfile -t missing < <(printf '%s\n' "${missing[@]-}" | sed '/^$/d' | sort -u)
[ ${#missing[@]} -eq 0 ] && { node_clients; exit 0; }

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged services; the tests run their own instances.
for svc in redis-server redis-sentinel memcached nutcracker prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
  fi
done
node_clients

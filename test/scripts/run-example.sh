#!/usr/bin/env bash
# `make run`: two redis-servers and two memcacheds on loopback, nuthatch in
# front of them on the example configuration, a short demonstration, then
# everything keeps running until Ctrl-C, which stops it all.
set -euo pipefail
BIN=${1:-bin/nuthatch}
CONF=${2:-etc/nuthatch/example.hcl}
RUNDIR=$(mktemp -d /tmp/nuthatch-run.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$RUNDIR"
  echo; echo "stopped nuthatch and its backends"
}
trap cleanup EXIT INT TERM

busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 6380 6381 11212 11213 22121 22122 22222; do
  if busy "$port"; then echo "port $port is in use; stop what uses it first" >&2; exit 1; fi
done

for port in 6380 6381; do
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$RUNDIR" --logfile "$RUNDIR/redis-$port.log" &
  pids+=($!)
done
for port in 11212 11213; do
  memcached -l 127.0.0.1 -p "$port" -U 0 -u "$(id -un)" >"$RUNDIR/memcached-$port.log" 2>&1 &
  pids+=($!)
done
for port in 6380 6381 11212 11213; do
  for _ in $(seq 50); do busy "$port" && break; sleep 0.1; done
done

"$BIN" -t -c "$CONF"
"$BIN" -c "$CONF" 2> >(tee "$RUNDIR/nuthatch.log" >&2) &
pids+=($!)
for _ in $(seq 50); do busy 22121 && busy 22122 && break; sleep 0.1; done

echo
echo "== nuthatch is running on $CONF =="
echo "-- redis pool on 127.0.0.1:22121 (backends 6380, 6381):"
for k in apple banana cherry date elderberry fig; do
  redis-cli -p 22121 set "$k" "value-of-$k" >/dev/null
  printf '   %-11s -> %-20s on backend ' "$k" "$(redis-cli -p 22121 get "$k")"
  if [ "$(redis-cli -p 6380 exists "$k")" = 1 ]; then echo 6380; else echo 6381; fi
done
echo "   mget apple fig date -> $(redis-cli -p 22121 mget apple fig date | tr '\n' ' ')"
echo "-- memcache pool on 127.0.0.1:22122 (backends 11212, 11213):"
printf 'set greeting 0 0 5\r\nhello\r\nget greeting\r\nquit\r\n' | (exec 3<>/dev/tcp/127.0.0.1/22122; cat >&3; timeout 1 cat <&3) | sed 's/^/   /' || true
echo
echo "Try it yourself:"
echo "   redis-cli -p 22121            # then: set foo bar / get foo / mget foo a b"
echo "   printf 'get greeting\\r\\n' | nc -q1 127.0.0.1 22122"
echo "Press Ctrl-C to stop nuthatch and the backends."
wait "${pids[-1]}"

"""Shared by the Python client scripts of test/integration/client_matrix_test.go.

A script runs as `/usr/bin/python3 SCRIPT.py CONFIG_JSON` (Debian's python3,
for Debian's python3-redis and python3-pymemcache). It prints one JSON line
per check, {"check": NAME, "ok": true} or {"check": NAME, "ok": false,
"error": "..."}; before the restart check it prints {"event": "restart"}
and waits for a line on stdin. It ends with {"event": "done"} and exits 1
if any check failed.
"""
import json
import sys
import time

cfg = json.loads(sys.argv[1])
host, _, port = cfg["addr"].rpartition(":")
port = int(port)
failed = 0


class Mismatch(Exception):
    pass


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def eq(what, got, want):
    if got != want:
        raise Mismatch("%s: got %r, want %r" % (what, got, want))


def check(name, fn):
    global failed
    try:
        detail = fn()
        emit({"check": name, "ok": True} if detail is None else {"check": name, "ok": True, "detail": detail})
        return True
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failed += 1
        emit({"check": name, "ok": False, "error": "%s: %s" % (type(e).__name__, e)})
        return False


def restart():
    emit({"event": "restart"})
    sys.stdin.readline()


def retry(fn, seconds=8.0):
    """Runs fn until it succeeds or seconds pass; returns the failed attempts."""
    deadline = time.monotonic() + seconds
    attempts = 0
    while True:
        try:
            fn()
            return {"failedAttempts": attempts}
        except Mismatch:
            raise
        except Exception as e:  # noqa: BLE001
            attempts += 1
            if time.monotonic() > deadline:
                raise Exception("not working %gs after the restart (%d attempts): %s: %s"
                                % (seconds, attempts, type(e).__name__, e))
            time.sleep(0.1)


def done():
    emit({"event": "done", "failed": failed})
    sys.exit(1 if failed else 0)

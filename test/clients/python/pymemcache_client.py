"""pymemcache (Debian's python3-pymemcache) through the matrix scenario.

CONFIG_JSON: {"addr", "prefix", "opts": keyword arguments for
pymemcache.client.base.Client}.
"""
import sys

from common import cfg, host, port, eq, check, restart, retry, done, Mismatch

try:
    import pymemcache
    from pymemcache.client.base import Client
    from pymemcache.exceptions import MemcacheClientError
except ImportError as e:
    sys.stderr.write("cannot import pymemcache (%s): test/scripts/deps.sh installs python3-pymemcache for /usr/bin/python3\n" % e)
    sys.exit(3)

p = cfg["prefix"]
opts = dict(cfg.get("opts") or {})
opts.setdefault("connect_timeout", 2)
opts.setdefault("timeout", 3)
c = Client((host, port), **opts)


def connect():
    return {"version": c.version().decode(), "pymemcache": pymemcache.__version__}


def strings():
    eq("set", c.set(p + ":a", "hello", noreply=False), True)
    eq("get", c.get(p + ":a"), b"hello")
    eq("get missing", c.get(p + ":nokey"), None)
    eq("add existing", c.add(p + ":a", "x", noreply=False), False)
    eq("append", c.append(p + ":a", " world", noreply=False), True)
    eq("get after append", c.get(p + ":a"), b"hello world")
    eq("delete", c.delete(p + ":a", noreply=False), True)
    eq("get after delete", c.get(p + ":a"), None)
    eq("delete missing", c.delete(p + ":a", noreply=False), False)


def incr():
    c.set(p + ":n", "10", noreply=False)
    eq("incr", c.incr(p + ":n", 5), 15)
    eq("decr", c.decr(p + ":n", 3), 12)
    eq("incr missing", c.incr(p + ":none", 1), None)


def mget():
    keys = ["%s:m:%d" % (p, i) for i in range(50)]
    want = {}
    for i, k in enumerate(keys):
        if i % 3:
            want[k] = ("v%d" % i).encode()
            c.set(k, "v%d" % i, noreply=False)
    eq("get_many (misses absent)", c.get_many(keys), want)


def error():
    c.set(p + ":notint", "abc", noreply=False)
    try:
        v = c.incr(p + ":notint", 1)
    except MemcacheClientError as e:
        if "non-numeric" not in str(e):
            raise Mismatch("incr on a non-numeric value: error %r, want CLIENT_ERROR ...non-numeric..." % str(e))
    else:
        raise Mismatch("incr on a non-numeric value gave %r, want a MemcacheClientError" % (v,))
    eq("get after the error", c.get(p + ":notint"), b"abc")


def after_restart():
    def attempt():
        keys = ["%s:r:%d" % (p, i) for i in range(10)]
        for k in keys:
            eq("set after the restart", c.set(k, "after", noreply=False), True)
        eq("get_many after the restart", len(c.get_many(keys)), 10)
    return retry(attempt, 10)


if check("connect", connect):
    check("strings", strings)
    check("incr", incr)
    check("mget", mget)
    check("error", error)
    restart()
    check("restart", after_restart)
done()

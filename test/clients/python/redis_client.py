"""redis-py (Debian's python3-redis) through the matrix scenario.

CONFIG_JSON: {"addr", "prefix", "opts": keyword arguments for redis.Redis,
"expectVersion": the backends' redis_version}. Debian bookworm's redis-py
4.3.4 speaks RESP2 only (no protocol= argument: RESP3 came in 5.0).
"""
import sys

from common import cfg, host, port, eq, check, restart, retry, done, Mismatch

try:
    import redis
except ImportError as e:
    sys.stderr.write("cannot import redis (%s): test/scripts/deps.sh installs python3-redis for /usr/bin/python3\n" % e)
    sys.exit(3)

p = cfg["prefix"]
opts = dict(cfg.get("opts") or {})
opts.setdefault("socket_timeout", 3)
opts.setdefault("socket_connect_timeout", 2)
r = redis.Redis(host=host, port=port, decode_responses=True, **opts)


def connect():
    eq("PING", r.ping(), True)
    return {"redis_py": redis.__version__}


def strings():
    eq("SET", r.set(p + ":s", "hello"), True)
    eq("GET", r.get(p + ":s"), "hello")
    eq("GET missing", r.get(p + ":nokey"), None)
    eq("APPEND", r.append(p + ":s", " world"), 11)
    eq("GET after APPEND", r.get(p + ":s"), "hello world")
    eq("INCR new", r.incr(p + ":n"), 1)
    eq("INCR", r.incr(p + ":n"), 2)


def hash_():
    eq("HSET", r.hset(p + ":h", mapping={"f1": "v1", "f2": "v2", "f3": "3"}), 3)
    h = r.hgetall(p + ":h")
    if not isinstance(h, dict):
        raise Mismatch("HGETALL gave %s %r, want a dict" % (type(h).__name__, h))
    eq("HGETALL", h, {"f1": "v1", "f2": "v2", "f3": "3"})
    eq("HGET", r.hget(p + ":h", "f2"), "v2")


def proto():
    # The raw reply, without redis-py's HGETALL callback: a RESP2 array.
    conn = r.connection_pool.get_connection("HGETALL")
    try:
        conn.send_command("HGETALL", p + ":h")
        raw = conn.read_response()
    finally:
        r.connection_pool.release(conn)
    got = 3 if isinstance(raw, dict) else 2
    eq("protocol (RESP2: HGETALL is a list; RESP3: a map)", got, cfg.get("expectProto", 2))
    return {"proto": got}


def mget():
    keys = ["%s:m:%d" % (p, i) for i in range(50)]
    want = [None if i % 3 == 0 else "v%d" % i for i in range(50)]
    for k, v in zip(keys, want):
        if v is not None:
            r.set(k, v)
    eq("MGET", r.mget(keys), want)


def pipeline():
    pl = r.pipeline(transaction=False)
    for i in range(50):
        pl.set("%s:p:%d" % (p, i), "pv%d" % i)
    for i in range(50):
        pl.get("%s:p:%d" % (p, i))
    eq("pipeline replies", pl.execute(), [True] * 50 + ["pv%d" % i for i in range(50)])


def error():
    r.set(p + ":notint", "abc")
    try:
        v = r.incr(p + ":notint")
    except redis.ResponseError as e:
        # redis-py drops the "ERR " prefix of the error line.
        if not str(e).startswith("value is not an integer"):
            raise Mismatch("INCR on a non-integer: error %r, want \"value is not an integer...\"" % str(e))
    else:
        raise Mismatch("INCR on a non-integer gave %r, want a ResponseError" % v)
    eq("PING after the error", r.ping(), True)
    eq("GET after the error", r.get(p + ":notint"), "abc")


def info():
    i = r.info()
    if not isinstance(i, dict) or "redis_version" not in i:
        raise Mismatch("INFO gave %r, want a dict with redis_version" % (i,))
    eq("redis_version", str(i["redis_version"]), cfg["expectVersion"])
    return {"redis_version": str(i["redis_version"])}


def after_restart():
    def attempt():
        keys = ["%s:r:%d" % (p, i) for i in range(10)]
        for k in keys:
            r.set(k, "after")
        eq("MGET after the restart", r.mget(keys), ["after"] * 10)
    return retry(attempt, 10)


if check("connect", connect):
    check("strings", strings)
    check("hash", hash_)
    check("proto", proto)
    check("mget", mget)
    check("pipeline", pipeline)
    check("error", error)
    check("info", info)
    restart()
    check("restart", after_restart)
done()

# nuthatch example configuration.
#
# nuthatch is a drop-in replacement for twemproxy (nutcracker 0.5.0): each
# "pool" block below is one top-level entry of a nutcracker.yml, with the
# same keys and defaults. docs/configuration.md describes every attribute.

# One worker process per two usable CPUs (the affinity mask, capped by the
# cgroup CPU quota), rounded up; every worker serves every pool. A number
# (1-1024) fixes the count instead.
worker_processes = "auto"

# "auto" pins worker i to CPU i; "off" (the default) leaves scheduling to
# the kernel.
worker_cpu_affinity = "off"

# Which worker a new connection goes to, where each worker has a listening
# socket of its own: "auto" (the default) sends a connection from this host
# to the worker of the CPU its client runs on, so that one client process
# is served by one worker, and spreads the others by the kernel's hash;
# "cpu" steers remote connections by CPU too; "hash" never steers.
reuseport_steering = "auto"

# On reload or upgrade, old workers finish in-flight requests for at most
# this long before they close their remaining client connections.
worker_shutdown_timeout = "30s"

log {
  # trace, debug, info, warn or error.
  level = "info"
  # "auto" writes to the journal when started by systemd, else text on stderr.
  format = "auto"
}

# twemproxy-compatible stats: connect with `nc 127.0.0.1 22222` to get the
# same JSON document nutcracker serves. listen = "" turns it off.
stats {
  listen   = "127.0.0.1:22222"
  interval = "30s"
}

# A Redis pool: clients connect to 127.0.0.1:22121 and keys are spread over
# two local redis-server instances.
pool "redis" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"

  # Key placement. These three lines are the defaults and must match the
  # old proxy exactly, or keys will be looked up on the wrong server.
  hash         = "fnv1a_64"
  distribution = "ketama"
  # Keys like "user:{42}:name" and "user:{42}:email" hash only "42" and so
  # land on the same server.
  hash_tag = "{}"

  # Give up on a server reply after 400ms (the default is to wait forever).
  timeout = "400ms"

  # Take a failing server out of the ring after two consecutive failures
  # and try it again after 30 seconds.
  auto_eject_hosts     = true
  server_failure_limit = 2
  server_retry_timeout = "30s"

  # Redis ACL users at the proxy (docs/security.md): clients AUTH as one of
  # them and every request is checked before it reaches a server.
  #
  #   user "app" {
  #     password_sha256 = "<printf %s password | sha256sum>"   # or a list
  #     commands        = ["+@read", "+@write", "-@dangerous"]
  #     keys            = ["app:*", "%R~shared:*"]
  #   }
  #
  # Credentials towards the servers: redis_username with redis_auth, or
  # username and password in a server block.

  # Each label is the server's address; it is also the server's identity
  # on the hash ring and in the stats output.
  server "127.0.0.1:6380" {}
  server "127.0.0.1:6381" {}
}

# A memcached pool on the next port, over two local memcached instances.
pool "memcache" {
  listen   = "127.0.0.1:22122"
  protocol = "memcache"

  hash         = "fnv1a_64"
  distribution = "ketama"
  timeout      = "400ms"

  # Open the server connections at start-up rather than on first use.
  preconnect = true

  # Gets for the same server queued together go out as one multi-key get
  # (memcached answers each get command with its own send); the default.
  coalesce_gets = true

  server "127.0.0.1:11212" {}
  server "127.0.0.1:11213" {}

  # A server's label is its identity on the hash ring. To move a server to
  # another machine without reshuffling its keys, keep the label and give
  # the new location as address (twemproxy's "host:port:weight name" form):
  #
  #   server "127.0.0.1:11213" {
  #     address = "10.0.0.7:11211"
  #   }
}

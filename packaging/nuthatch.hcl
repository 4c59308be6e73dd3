# /etc/nuthatch/nuthatch.hcl — nuthatch's configuration, as installed by the
# package. Upgrades never overwrite this file once you have edited it.
#
# It proxies the distribution's own redis-server (127.0.0.1:6379) and
# memcached (127.0.0.1:11211). Every attribute, its default and its twemproxy
# equivalent: nuthatch.hcl(5) and /usr/share/doc/nuthatch/configuration.md.gz.
# Commented examples are in /usr/share/doc/nuthatch/examples/.
#
# Check a change before applying it:   nuthatch -t -c /etc/nuthatch/nuthatch.hcl
# Apply it without dropping clients:   systemctl reload nuthatch
#
# The listening sockets belong to nuthatch.socket: a pool's listen address
# must also be a ListenStream= line there (systemctl edit nuthatch.socket).

# One worker process per CPU the service may run on.
worker_processes        = "auto"
worker_shutdown_timeout = "30s"

# Matches RuntimeDirectory=nuthatch of nuthatch.service; `nuthatch -s` and
# `systemctl reload` find the master through it.
pid_file = "/run/nuthatch/nuthatch.pid"

log {
  level  = "info"
  # "auto": the journal under systemd (journalctl -u nuthatch), else stderr.
  format = "auto"
}

# twemproxy-compatible stats JSON: nc 127.0.0.1 22222
stats {
  listen = "127.0.0.1:22222"
}

pool "redis" {
  listen       = "127.0.0.1:22121"
  protocol     = "redis"
  hash         = "fnv1a_64"
  distribution = "ketama"
  timeout      = "400ms"

  server "127.0.0.1:6379" {}
}

pool "memcache" {
  listen       = "127.0.0.1:22122"
  protocol     = "memcache"
  hash         = "fnv1a_64"
  distribution = "ketama"
  timeout      = "400ms"

  server "127.0.0.1:11211" {}
}

# Converted from every_key.yml by "nuthatch convert".
# Check it with "nuthatch -t -c FILE" before use.

# twemproxy is single-threaded; "auto" runs one worker per CPU.
worker_processes = "auto"

# nutcracker's command-line flags map to settings here:
#   -a/--stats-addr and -s/--stats-port -> stats { listen } (twemproxy: 0.0.0.0:22222)
#   -i/--stats-interval (milliseconds)  -> stats { interval } (twemproxy: 30000)
#   -v/--verbose, -o/--output           -> log { level, format }
#   -p/--pid-file                       -> pid_file
# nuthatch's own default stats listener is 127.0.0.1:22222; this keeps twemproxy's.
stats {
  listen   = "0.0.0.0:22222"
  interval = "30s"
}

pool "everything" {
  listen               = "0.0.0.0:22401"
  protocol             = "redis"
  hash                 = "murmur"
  hash_tag             = "$$"
  distribution         = "modula"
  timeout              = "250ms"
  backlog              = 2048
  preconnect           = true
  client_connections   = 1000
  server_connections   = 2
  auto_eject_hosts     = true
  server_retry_timeout = "45000ms"
  server_failure_limit = 3
  tcpkeepalive         = true
  redis_auth           = "s3cret $${not} %%{a template}"
  redis_db             = 3
  server "127.0.0.1:6379" {}
  server "second" {
    address = "127.0.0.1:6380"
    weight  = 2
  }
}

pool "defaults" {
  listen   = "127.0.0.1:22402"
  protocol = "memcache"
  server "127.0.0.1:11211" {}
}

pool "explicit_false" {
  listen             = "127.0.0.1:22403"
  protocol           = "memcache"
  timeout            = "0ms"
  preconnect         = false
  client_connections = 0
  auto_eject_hosts   = false
  tcpkeepalive       = false
  server "127.0.0.1:11212" {}
}

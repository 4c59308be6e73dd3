# Converted from nutcracker_leaf.yml by "nuthatch convert".
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

pool "leaf" {
  listen               = "127.0.0.1:22121"
  protocol             = "memcache"
  hash                 = "fnv1a_64"
  distribution         = "ketama"
  auto_eject_hosts     = true
  server_retry_timeout = "2000ms"
  server_failure_limit = 1
  server "127.0.0.1:11212" {}
  server "127.0.0.1:11213" {}
}

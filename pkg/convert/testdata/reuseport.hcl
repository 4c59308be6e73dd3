# Converted from reuseport.yml by "nuthatch convert".
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

pool "on" {
  listen   = "127.0.0.1:22801"
  protocol = "memcache"
  server "127.0.0.1:11211" {}
}

pool "off" {
  listen   = "127.0.0.1:22802"
  protocol = "memcache"
  server "127.0.0.1:11212" {}
}

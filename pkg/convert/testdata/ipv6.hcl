# Converted from ipv6.yml by "nuthatch convert".
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

pool "bare" {
  listen   = "[::1]:22501"
  protocol = "redis"
  # twemproxy: - ::1:6379:1
  server "::1:6379" {
    address = "[::1]:6379"
  }
  # twemproxy: - ::1:11211:1
  server "::1" {
    address = "[::1]:11211"
  }
  server "linklocal" {
    address = "[fe80::1%lo]:6380"
    weight  = 2
  }
}

pool "bracketed" {
  listen   = "[0:0:0:0:0:0:0:1]:22502"
  protocol = "redis"
  server "[::1]:6379" {}
  server "[::1]:11211" {}
}

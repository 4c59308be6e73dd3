# Converted from yaml_forms.yml by "nuthatch convert".
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

pool "quoted" {
  listen   = "127.0.0.1:22601"
  protocol = "redis"
  hash_tag = "{}"
  server "127.0.0.1:6379" {}
  server "named" {
    address = "127.0.0.1:6380"
  }
}

pool "listish" {
  listen   = "127.0.0.1:22602"
  protocol = "memcache"
  hash     = "crc16"
  server "127.0.0.1:6381" {}
}

pool "folded" {
  listen   = "127.0.0.1:22603"
  protocol = "memcache"
  server "127.0.0.1:6382" {}
}

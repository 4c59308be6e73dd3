# Converted from weights.yml by "nuthatch convert".
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

pool "ketama_weights" {
  listen       = "127.0.0.1:22301"
  protocol     = "memcache"
  hash         = "md5"
  distribution = "ketama"
  server "127.0.0.1:11211" {}
  server "127.0.0.1:11212" {
    weight = 7
  }
  server "127.0.0.1:11213" {
    weight = 1000000
  }
  server "heavy" {
    address = "127.0.0.1:11214"
    weight  = 13
  }
}

pool "modula_weights" {
  listen       = "127.0.0.1:22302"
  protocol     = "memcache"
  hash         = "crc32a"
  distribution = "modula"
  server "127.0.0.1:11211" {
    weight = 3
  }
  server "127.0.0.1:11212" {}
  server "five" {
    address = "127.0.0.1:11213"
    weight  = 5
  }
}

pool "random_weights" {
  listen       = "127.0.0.1:22303"
  protocol     = "memcache"
  distribution = "random"
  server "127.0.0.1:11211" {
    weight = 3
  }
  server "127.0.0.1:11212" {}
}

pool "zeros" {
  listen   = "127.0.0.1:22304"
  protocol = "memcache"
  server "127.0.0.1:06379" {}
  server "127.0.0.1:011211" {
    weight = 2
  }
}

# Converted from names.yml by "nuthatch convert".
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

pool "plain" {
  listen   = "127.0.0.1:22201"
  protocol = "redis"
  server "10.0.0.1:6379" {}
  server "cache-b" {
    address = "10.0.0.2:6379"
    weight  = 2
  }
  server "10.0.0.3:6379" {}
  server "10.0.0.9:6379" {
    address = "10.0.0.4:6379"
  }
  server "rack:a:5" {
    address = "10.0.0.5:6379"
    weight  = 3
  }
}

pool "port11211" {
  listen       = "127.0.0.1:22202"
  protocol     = "memcache"
  distribution = "modula"
  server "10.0.1.1:11211" {}
  # twemproxy: - 10.0.1.2:11211:1 10.0.1.2:11211
  # The address is spelled differently from the label on purpose: that
  # makes the label an explicit name, as it is in twemproxy.
  server "10.0.1.2:11211" {
    address = "10.0.1.2:011211"
  }
  # twemproxy: - 10.0.1.3:11211:2
  server "10.0.1.3" {
    address = "10.0.1.3:11211"
    weight  = 2
  }
  server "10.0.1.3:11211" {
    address = "10.0.1.4:6379"
  }
  server "cache.example.com:11211" {}
}

pool "unixnames" {
  listen       = "127.0.0.1:22203"
  protocol     = "redis"
  distribution = "ketama"
  server "unix:/run/redis/a.sock" {}
  server "sock-b" {
    address = "unix:/run/redis/b.sock"
    weight  = 2
  }
  # twemproxy: - /run/redis/c.sock:1 unix:/run/redis/c.sock
  # The address is spelled differently from the label on purpose: that
  # makes the label an explicit name, as it is in twemproxy.
  server "unix:/run/redis/c.sock" {
    address = "unix:/./run/redis/c.sock"
  }
  server "unix:/run/redis/e.sock" {
    address = "unix:/run/redis/d.sock"
  }
  # twemproxy: - /run/redis/e.sock:1
  server "/run/redis/e.sock:" {
    address = "unix:/run/redis/e.sock"
  }
}

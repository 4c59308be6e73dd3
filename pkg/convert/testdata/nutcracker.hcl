# Converted from nutcracker.yml by "nuthatch convert".
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

pool "alpha" {
  listen               = "127.0.0.1:22121"
  protocol             = "redis"
  hash                 = "fnv1a_64"
  distribution         = "ketama"
  auto_eject_hosts     = true
  server_retry_timeout = "2000ms"
  server_failure_limit = 1
  server "127.0.0.1:6379" {}
}

pool "beta" {
  listen           = "127.0.0.1:22122"
  protocol         = "redis"
  hash             = "fnv1a_64"
  hash_tag         = "{}"
  distribution     = "ketama"
  timeout          = "400ms"
  auto_eject_hosts = false
  server "server1" {
    address = "127.0.0.1:6380"
  }
  server "server2" {
    address = "127.0.0.1:6381"
  }
  server "server3" {
    address = "127.0.0.1:6382"
  }
  server "server4" {
    address = "127.0.0.1:6383"
  }
}

pool "gamma" {
  listen               = "127.0.0.1:22123"
  protocol             = "memcache"
  hash                 = "fnv1a_64"
  distribution         = "ketama"
  timeout              = "400ms"
  backlog              = 1024
  preconnect           = true
  auto_eject_hosts     = true
  server_retry_timeout = "2000ms"
  server_failure_limit = 3
  server "127.0.0.1:11212" {}
  server "127.0.0.1:11213" {}
}

pool "delta" {
  listen               = "127.0.0.1:22124"
  protocol             = "memcache"
  hash                 = "fnv1a_64"
  distribution         = "ketama"
  timeout              = "100ms"
  auto_eject_hosts     = true
  server_retry_timeout = "2000ms"
  server_failure_limit = 1
  server "127.0.0.1:11214" {}
  server "127.0.0.1:11215" {}
  server "127.0.0.1:11216" {}
  server "127.0.0.1:11217" {}
  server "127.0.0.1:11218" {}
  server "127.0.0.1:11219" {}
  server "127.0.0.1:11220" {}
  server "127.0.0.1:11221" {}
  server "127.0.0.1:11222" {}
  server "127.0.0.1:11223" {}
}

pool "omega" {
  listen           = "unix:/tmp/gamma"
  listen_mode      = "0666"
  protocol         = "memcache"
  hash             = "hsieh"
  distribution     = "ketama"
  auto_eject_hosts = false
  server "127.0.0.1:11214" {
    weight = 100000
  }
  server "127.0.0.1:11215" {}
}

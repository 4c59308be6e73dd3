pool "gamma" {
  listen      = "unix:/run/nuthatch/gamma.sock"
  listen_mode = "0666"
  protocol    = "memcache"
  server "unix:/run/memcached/a.sock" {}
  server "b" {
    address = "unix:/run/memcached/b.sock"
  }
}

pool "delta" {
  listen   = "unix:/run/nuthatch/delta.sock"
  protocol = "redis"
  server "unix:/run/redis/redis.sock" {
    weight = 3
  }
}

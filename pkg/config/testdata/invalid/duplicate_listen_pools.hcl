pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

pool "beta" {
  listen   = "127.0.0.1:22121"
  protocol = "memcache"
  server "127.0.0.1:11211" {}
}

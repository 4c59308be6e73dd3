pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "memcache"
  redis_db = 2
  server "127.0.0.1:11211" {}
}

pool "alpha" {
  listen       = "127.0.0.1:22121"
  protocol     = "memcache"
  distribution = "modula"
  server "127.0.0.1:11211" {
    weight = 1000001
  }
}

pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  server "cache-a" {
    address = "10.0.0.1:abc"
  }
}

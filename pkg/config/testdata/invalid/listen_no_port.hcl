pool "alpha" {
  listen   = "127.0.0.1"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

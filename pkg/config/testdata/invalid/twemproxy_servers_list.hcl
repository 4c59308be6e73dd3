pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  servers  = ["127.0.0.1:6379:1"]
}

pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  timeout  = -1
  server "127.0.0.1:6379" {}
}

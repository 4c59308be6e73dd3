pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  timeout  = 400
  server "127.0.0.1:6379" {}
}

pool "alpha" {
  listen   = var.listen
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  coalesce_gets = false
  server "127.0.0.1:6379" {}
}

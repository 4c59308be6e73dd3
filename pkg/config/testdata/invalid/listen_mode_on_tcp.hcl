pool "alpha" {
  listen      = "127.0.0.1:22121"
  listen_mode = "0666"
  protocol    = "redis"
  server "127.0.0.1:6379" {}
}

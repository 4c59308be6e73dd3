pool "alpha" {
  listen             = "127.0.0.1:22121"
  protocol           = "redis"
  server_connections = 0
  server "127.0.0.1:6379" {}
}

pool "alpha" {
  listen             = "127.0.0.1:22121"
  protocol           = "redis"
  server_connections = 1.5
  server "127.0.0.1:6379" {}
}

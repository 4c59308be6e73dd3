pool "alpha" {
  listen               = "127.0.0.1:22121"
  protocol             = "redis"
  backlog              = -1
  client_connections   = -10
  server_failure_limit = -2
  redis_db             = -1
  server "127.0.0.1:6379" {}
}

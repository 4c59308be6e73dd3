worker_shutdown_timeout = "-5s"

pool "alpha" {
  listen               = "127.0.0.1:22121"
  protocol             = "redis"
  server_retry_timeout = "-1s"
  server "127.0.0.1:6379" {}
}

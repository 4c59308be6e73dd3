worker_processes = 0

pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

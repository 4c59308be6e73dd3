# A quoted number is accepted too, as nutcracker.yml users tend to write it.
worker_processes        = "1024"
worker_shutdown_timeout = "0s"

pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

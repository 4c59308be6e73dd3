worker_processes        = "auto"
worker_cpu_affinity     = "auto"
reuseport_steering      = "cpu"
worker_shutdown_timeout = "30s"
pid_file                = "/run/nuthatch/nuthatch.pid"
user  = "nuthatch"
group = "nuthatch"

log {
  level  = "info"
  format = "auto"
}

stats {
  listen   = "127.0.0.1:22222"
  interval = "30s"
}

pool "alpha" {
  listen               = "127.0.0.1:22121"
  protocol             = "redis"
  hash                 = "fnv1a_64"
  hash_tag             = "{}"
  distribution         = "ketama"
  timeout              = "400ms"
  backlog              = 512
  preconnect           = false
  client_connections   = 0
  server_connections   = 1
  auto_eject_hosts     = false
  server_retry_timeout = "30s"
  server_failure_limit = 2
  tcpkeepalive         = false
  redis_auth           = ""
  redis_db             = 0

  server "127.0.0.1:7001" {}
  server "cache-b" {
    address = "127.0.0.1:7002"
    weight  = 2
  }
}

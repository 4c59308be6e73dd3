pid_file = "/run/nuthatch.pid"
user     = "proxy"
group    = "nogroup"

log {
  level  = "trace"
  format = "json"
}

pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

stats {
  listen = "127.0.0.1:9102"
}

metrics {
  listen = "127.0.0.1:9102"
}

pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

stats {
  listen = ""
}

metrics {
  listen = "127.0.0.1:9102"
}

# With stats disabled its default port is free for a pool.
pool "alpha" {
  listen   = "127.0.0.1:22222"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

# The stats listener defaults to 127.0.0.1:22222.
pool "alpha" {
  listen   = "127.0.0.1:22222"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

pool "alpha" {
  listen   = "unix:run/nuthatch/alpha.sock"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

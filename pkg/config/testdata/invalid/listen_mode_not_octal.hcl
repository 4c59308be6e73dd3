pool "alpha" {
  listen      = "unix:/run/nuthatch/alpha.sock"
  listen_mode = "0999"
  protocol    = "redis"
  server "127.0.0.1:6379" {}
}

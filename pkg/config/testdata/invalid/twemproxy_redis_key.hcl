pool "alpha" {
  listen = "127.0.0.1:22121"
  redis  = true
  server "127.0.0.1:6379" {}
}

pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  hash_tag = "«»"
  server "127.0.0.1:6379" {}
}

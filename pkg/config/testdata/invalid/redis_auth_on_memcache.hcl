pool "alpha" {
  listen     = "127.0.0.1:22121"
  protocol   = "memcache"
  redis_auth = "hunter2-do-not-print"
  server "127.0.0.1:11211" {}
}

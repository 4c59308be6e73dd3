pool "store" {
  listen       = "127.0.0.1:22121"
  protocol     = "redis"
  hash         = "murmur"
  distribution = "modula"
  redis_db     = 3
  cluster {
    seeds        = ["127.0.0.1:7001", "unix:/tmp/x"]
    read_from    = "slave"
    max_redirects = 0
  }
  server "127.0.0.1:6379" {}
}

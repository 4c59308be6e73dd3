pool "c" {
  listen         = "127.0.0.1:22121"
  protocol       = "redis"
  redis_username = "proxy"
  cluster {
    seeds = ["127.0.0.1:7000"]
  }
}

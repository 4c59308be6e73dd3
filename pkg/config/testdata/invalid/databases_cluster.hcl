pool "store" {
  listen    = "127.0.0.1:22121"
  protocol  = "redis"
  databases = 16
  cluster {
    seeds = ["127.0.0.1:7001"]
  }
}

pool "m" {
  listen   = "127.0.0.1:22122"
  protocol = "memcache"
  cluster {
    seeds = ["127.0.0.1:7001"]
  }
}

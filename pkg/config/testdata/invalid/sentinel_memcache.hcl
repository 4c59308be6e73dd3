pool "m" {
  listen   = "127.0.0.1:22122"
  protocol = "memcache"
  sentinel {
    addresses = ["127.0.0.1:26379"]
  }
  server "shard-a" {}
}

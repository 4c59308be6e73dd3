pool "s" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  sentinel {
    addresses = ["127.0.0.1:26379"]
    read_from = "slave"
  }
  server "shard-a" {}
}

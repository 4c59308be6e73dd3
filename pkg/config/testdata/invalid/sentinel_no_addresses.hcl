pool "s" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  sentinel {
    failover_timeout = "2s"
  }
  server "shard-a" {}
  server "shard-b" { master = "shard-a" }
}

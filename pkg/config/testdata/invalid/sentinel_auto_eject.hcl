pool "s" {
  listen           = "127.0.0.1:22121"
  protocol         = "redis"
  auto_eject_hosts = true
  sentinel {
    addresses = ["127.0.0.1:26379"]
  }
  server "shard-a" {}
}

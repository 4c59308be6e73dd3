pool "sessions" {
  listen       = "127.0.0.1:22121"
  protocol     = "redis"
  hash         = "fnv1a_64"
  distribution = "ketama"
  redis_auth   = "data-secret"
  sentinel {
    addresses        = ["127.0.0.1:26379", "127.0.0.1:26380", "sentinel.example:26381"]
    username         = "watcher"
    password         = "sentinel-secret"
    failover_timeout = "5s"
    read_from        = "replica_preferred"
  }
  server "shard-a" {}
  server "shard-b" { weight = 2 }
  server "legacy" { master = "mymaster-2" }
}

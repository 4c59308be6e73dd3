pool "store" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  timeout  = "1s"
  cluster {
    seeds            = ["127.0.0.1:7001", "127.0.0.1:7002"]
    failover_timeout = "8s"
  }
}

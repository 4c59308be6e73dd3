pool "zero" {
  listen               = "127.0.0.1:22121"
  protocol             = "redis"
  timeout              = "0"
  server_retry_timeout = "0s"
  server "127.0.0.1:6379" {}
}

pool "long" {
  listen               = "127.0.0.1:22122"
  protocol             = "redis"
  timeout              = "1m30s"
  server_retry_timeout = "1h"
  client_write_timeout = "10s"
  server "127.0.0.1:6380" {}
}

pool "fine" {
  listen   = "127.0.0.1:22123"
  protocol = "memcache"
  timeout  = "1.5s"
  server "127.0.0.1:11211" {}
}

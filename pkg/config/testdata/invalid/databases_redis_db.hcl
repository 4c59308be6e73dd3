pool "alpha" {
  listen    = "127.0.0.1:22121"
  protocol  = "redis"
  redis_db  = 16
  databases = 16
  server "127.0.0.1:6379" {}
}
pool "beta" {
  listen    = "127.0.0.1:22122"
  protocol  = "redis"
  databases = 200
  server "127.0.0.1:6379" {}
}

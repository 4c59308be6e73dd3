# The password never appears in renderings of the configuration.
pool "secure" {
  listen     = "127.0.0.1:22121"
  protocol   = "redis"
  redis_auth = "s3cret-Passw0rd"
  redis_db   = 3
  server "127.0.0.1:6379" {}
}

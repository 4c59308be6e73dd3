# Quoted numbers and booleans convert, as YAML users tend to write them.
pool "alpha" {
  listen             = "127.0.0.1:22121"
  protocol           = "redis"
  backlog            = "1024"
  server_connections = "2"
  preconnect         = "true"
  server "127.0.0.1:6379" {
    weight = "3"
  }
}

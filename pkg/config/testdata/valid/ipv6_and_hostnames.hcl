stats {
  listen   = "[::1]:22222"
  interval = "1s"
}

pool "v6" {
  listen   = "[::1]:22121"
  protocol = "redis"
  server "[::1]:6379" {}
  server "redis-b.example.internal:6379" {}
  server "[fe80::1%lo]:6380" {}
}

# An empty host listens on every address.
pool "any" {
  listen   = ":22124"
  protocol = "memcache"
  server "localhost:11211" {}
}

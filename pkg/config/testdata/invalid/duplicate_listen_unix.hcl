pool "alpha" {
  listen   = "unix:/run/nuthatch/a.sock"
  protocol = "redis"
  server "127.0.0.1:6379" {}
}

pool "beta" {
  listen   = "unix:/run/nuthatch/../nuthatch/a.sock"
  protocol = "memcache"
  server "127.0.0.1:11211" {}
}

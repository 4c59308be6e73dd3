# twemproxy names an unnamed server on port 11211 by its host alone, so
# these two servers would share one identity on the ring.
pool "alpha" {
  listen   = "127.0.0.1:22121"
  protocol = "memcache"
  server "10.0.0.1:11211" {}
  server "10.0.0.1" {
    address = "10.0.0.2:11211"
  }
}

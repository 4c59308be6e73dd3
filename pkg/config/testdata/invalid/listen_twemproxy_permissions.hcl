pool "gamma" {
  listen   = "/tmp/gamma 0666"
  protocol = "memcache"
  server "127.0.0.1:11211" {}
}

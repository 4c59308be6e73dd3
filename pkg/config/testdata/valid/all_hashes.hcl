# Every hash twemproxy knows, and every distribution.
pool "h1" {
  listen = "127.0.0.1:30001"
  protocol = "memcache"
  hash = "one_at_a_time"
  distribution = "ketama"
  server "127.0.0.1:11211" {}
}
pool "h2" {
  listen = "127.0.0.1:30002"
  protocol = "memcache"
  hash = "md5"
  distribution = "modula"
  server "127.0.0.1:11211" {}
}
pool "h3" {
  listen = "127.0.0.1:30003"
  protocol = "memcache"
  hash = "crc16"
  distribution = "random"
  server "127.0.0.1:11211" {}
}
pool "h4" {
  listen = "127.0.0.1:30004"
  protocol = "memcache"
  hash = "crc32"
  server "127.0.0.1:11211" {}
}
pool "h5" {
  listen = "127.0.0.1:30005"
  protocol = "memcache"
  hash = "crc32a"
  server "127.0.0.1:11211" {}
}
pool "h6" {
  listen = "127.0.0.1:30006"
  protocol = "memcache"
  hash = "fnv1_64"
  server "127.0.0.1:11211" {}
}
pool "h7" {
  listen = "127.0.0.1:30007"
  protocol = "memcache"
  hash = "fnv1a_64"
  server "127.0.0.1:11211" {}
}
pool "h8" {
  listen = "127.0.0.1:30008"
  protocol = "memcache"
  hash = "fnv1_32"
  server "127.0.0.1:11211" {}
}
pool "h9" {
  listen = "127.0.0.1:30009"
  protocol = "memcache"
  hash = "fnv1a_32"
  server "127.0.0.1:11211" {}
}
pool "h10" {
  listen = "127.0.0.1:30010"
  protocol = "memcache"
  hash = "hsieh"
  server "127.0.0.1:11211" {}
}
pool "h11" {
  listen = "127.0.0.1:30011"
  protocol = "memcache"
  hash = "murmur"
  server "127.0.0.1:11211" {}
}
pool "h12" {
  listen = "127.0.0.1:30012"
  protocol = "memcache"
  hash = "jenkins"
  server "127.0.0.1:11211" {}
}

# Named servers keep their place on the ring when their address changes.
pool "beta" {
  listen       = "127.0.0.1:22122"
  protocol     = "memcache"
  hash         = "md5"
  distribution = "ketama"

  server "server1" {
    address = "127.0.0.1:11211"
    weight  = 1
  }
  server "server2" {
    address = "127.0.0.1:11212"
    weight  = 2
  }
  # An address equal to the label does not make a name.
  server "127.0.0.1:11213" {
    address = "127.0.0.1:11213"
  }
  # Port 11211 is left out of an unnamed server's ring identity.
  server "10.0.0.9:11211" {}
}

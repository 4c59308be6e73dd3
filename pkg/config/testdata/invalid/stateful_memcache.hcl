pool "mc" {
  listen               = "127.0.0.1:22121"
  protocol             = "memcache"
  allow_keys           = true
  allow_admin_commands = true
  databases            = 16
  server "127.0.0.1:11211" {}
}

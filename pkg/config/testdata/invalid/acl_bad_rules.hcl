pool "secure" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  user "app" {
    password_sha256 = "6c904c5190e8b45c2f0af062eefdb2f5b41ce3809b0e6b5bc50aafdd60b290d8"
    commands        = ["+@read", "+@nosuch"]
  }
  user "keys" {
    password_sha256 = "6c904c5190e8b45c2f0af062eefdb2f5b41ce3809b0e6b5bc50aafdd60b290d8"
    keys            = ["%X~a"]
  }
  user "nopw" {
    commands = ["+get"]
  }
  user "both" {
    nopass          = true
    password_sha256 = "6c904c5190e8b45c2f0af062eefdb2f5b41ce3809b0e6b5bc50aafdd60b290d8"
  }
  user "hash" {
    password_sha256 = ["not-a-digest-but-a-password"]
  }
  user "app" {
    nopass = true
  }
  user "sub" {
    nopass   = true
    commands = ["+select|0", "+nosuchcommand"]
  }
  server "127.0.0.1:6379" {
    username = "proxy"
  }
}

pool "mc" {
  listen         = "127.0.0.1:22122"
  protocol       = "memcache"
  redis_username = "proxy"
  user "x" {
    nopass = true
  }
  server "127.0.0.1:11211" {
    password = "x"
  }
}

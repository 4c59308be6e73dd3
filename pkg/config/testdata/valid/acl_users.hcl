pool "secure" {
  listen         = "127.0.0.1:22121"
  protocol       = "redis"
  redis_auth     = "backend-secret"
  redis_username = "proxy"

  user "app" {
    password_sha256 = ["6c904c5190e8b45c2f0af062eefdb2f5b41ce3809b0e6b5bc50aafdd60b290d8", "983f90f0fe1081a1611e12eeab5944daa6a66b308f161459f96e58fd76edfdfc"]
    commands        = ["+@read", "+@write", "-@dangerous", "+config|get"]
    keys            = ["app:*", "%R~shared:*"]
    channels        = ["app.*"]
  }
  user "reporter" {
    password_sha256 = "6c904c5190e8b45c2f0af062eefdb2f5b41ce3809b0e6b5bc50aafdd60b290d8"
    commands        = ["+@read"]
    keys            = ["allkeys"]
  }
  user "default" {
    nopass   = true
    commands = ["+ping"]
  }
  user "retired" {
    enabled = false
  }

  server "127.0.0.1:6379" {}
  server "127.0.0.1:6380" {
    username = "other"
    password = "other-secret"
  }
}

pool "braces" {
  listen   = "127.0.0.1:22121"
  protocol = "redis"
  hash_tag = "{}"
  server "127.0.0.1:6379" {}
}
pool "dollars" {
  listen   = "127.0.0.1:22122"
  protocol = "redis"
  hash_tag = "$$"
  server "127.0.0.1:6379" {}
}
pool "none" {
  listen   = "127.0.0.1:22123"
  protocol = "redis"
  hash_tag = ""
  server "127.0.0.1:6379" {}
}

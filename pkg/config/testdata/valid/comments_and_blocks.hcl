// Both comment styles work.
/* So do
   block comments. */
log {}
stats {}
metrics {}

pool "alpha" { # trailing comment
  listen = "127.0.0.1:22121"
  protocol = "redis"
  server "127.0.0.1:6379" {
  }
}

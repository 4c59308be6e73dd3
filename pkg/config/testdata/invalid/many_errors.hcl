# Every problem is reported, in file order.
worker_processes = -1

pool "alpha" {
  listen       = "127.0.0.1"
  hash         = "sha1"
  distribution = "ring"
  server "x" {
    weight = -1
  }
}

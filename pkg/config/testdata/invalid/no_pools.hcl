worker_processes = 2

stats {
  listen = "127.0.0.1:22222"
}

pool "omega" {
  listen               = "127.0.0.1:22126"
  protocol             = "memcache"
  coalesce_gets        = false
  hash                 = "hsieh"
  distribution         = "modula"
  auto_eject_hosts     = true
  server_retry_timeout = "2s"
  server_failure_limit = 3
  server_connections   = 4
  preconnect           = true
  tcpkeepalive         = true
  backlog              = 1024
  client_connections   = 10000

  server "127.0.0.1:11214" { weight = 100 }
  server "127.0.0.1:11215" { weight = 10 }
  server "127.0.0.1:11216" { weight = 1000000 }
}

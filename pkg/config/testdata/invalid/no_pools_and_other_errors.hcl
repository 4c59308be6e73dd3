# "No pools" is reported alongside other problems.
log {
  level = "loud"
}

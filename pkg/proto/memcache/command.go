package memcache

// Command identifies a memcached ASCII command.
type Command uint8

// Commands understood by the parser. CmdUnsupported covers the commands
// memcached knows but the proxy does not forward (stats, flush_all,
// verbosity, ...); Request.Name holds the command word.
const (
	CmdInvalid Command = iota
	CmdGet
	CmdGets
	CmdGat
	CmdGats
	CmdSet
	CmdAdd
	CmdReplace
	CmdAppend
	CmdPrepend
	CmdCas
	CmdDelete
	CmdIncr
	CmdDecr
	CmdTouch
	CmdVersion
	CmdQuit
	CmdMetaGet        // mg
	CmdMetaSet        // ms
	CmdMetaDelete     // md
	CmdMetaArithmetic // ma
	CmdMetaNoop       // mn
	CmdMetaDebug      // me
	CmdUnsupported
)

var commandNames = [...]string{
	CmdInvalid:        "invalid",
	CmdGet:            "get",
	CmdGets:           "gets",
	CmdGat:            "gat",
	CmdGats:           "gats",
	CmdSet:            "set",
	CmdAdd:            "add",
	CmdReplace:        "replace",
	CmdAppend:         "append",
	CmdPrepend:        "prepend",
	CmdCas:            "cas",
	CmdDelete:         "delete",
	CmdIncr:           "incr",
	CmdDecr:           "decr",
	CmdTouch:          "touch",
	CmdVersion:        "version",
	CmdQuit:           "quit",
	CmdMetaGet:        "mg",
	CmdMetaSet:        "ms",
	CmdMetaDelete:     "md",
	CmdMetaArithmetic: "ma",
	CmdMetaNoop:       "mn",
	CmdMetaDebug:      "me",
	CmdUnsupported:    "unsupported",
}

// String returns the command word as sent on the wire.
func (c Command) String() string {
	if int(c) < len(commandNames) {
		return commandNames[c]
	}
	return "invalid"
}

// IsRetrieval reports whether c is get, gets, gat or gats: the commands that
// take several keys and are split per server.
func (c Command) IsRetrieval() bool { return c >= CmdGet && c <= CmdGats }

// IsStorage reports whether c carries a value block (set family, cas, ms).
func (c Command) IsStorage() bool {
	return (c >= CmdSet && c <= CmdCas) || c == CmdMetaSet
}

// IsMeta reports whether c is one of the meta commands.
func (c Command) IsMeta() bool { return c >= CmdMetaGet && c <= CmdMetaDebug }

// lookupCommand maps a command word to its Command. It returns CmdInvalid for
// words memcached answers with ERROR. The switch on string(word) does not
// allocate.
func lookupCommand(word []byte) Command {
	switch string(word) {
	case "get":
		return CmdGet
	case "gets":
		return CmdGets
	case "gat":
		return CmdGat
	case "gats":
		return CmdGats
	case "set":
		return CmdSet
	case "add":
		return CmdAdd
	case "replace":
		return CmdReplace
	case "append":
		return CmdAppend
	case "prepend":
		return CmdPrepend
	case "cas":
		return CmdCas
	case "delete":
		return CmdDelete
	case "incr":
		return CmdIncr
	case "decr":
		return CmdDecr
	case "touch":
		return CmdTouch
	case "version":
		return CmdVersion
	case "quit":
		return CmdQuit
	case "mg":
		return CmdMetaGet
	case "ms":
		return CmdMetaSet
	case "md":
		return CmdMetaDelete
	case "ma":
		return CmdMetaArithmetic
	case "mn":
		return CmdMetaNoop
	case "me":
		return CmdMetaDebug
	// Known to memcached 1.6.18 (some only in debug, TLS or extstore
	// builds) but not proxied.
	case "stats", "flush_all", "verbosity", "shutdown", "slabs",
		"cache_memlimit", "lru_crawler", "lru", "watch", "extstore",
		"refresh_certs", "bget", "misbehave", "debugtime":
		return CmdUnsupported
	}
	return CmdInvalid
}

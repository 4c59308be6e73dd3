package resp

//go:generate go test -run TestGenerateCommandTable -update

// redisCommand is what redis-server reports about a command in COMMAND; the
// generated commands_table.go lists them.
type redisCommand struct {
	name                     string
	arity, first, last, step int
	keyNum                   int // numkeys argument index from a "keynum" key spec, 0 if none
	flags                    cmdFlag
}

type cmdFlag uint16

const (
	flagWrite cmdFlag = 1 << iota
	flagReadonly
	flagBlocking
	flagPubSub
	flagAdmin
	flagMovable
)

// cmdFlagNames maps redis COMMAND flags to cmdFlag, for the generator.
var cmdFlagNames = map[string]cmdFlag{
	"write":       flagWrite,
	"readonly":    flagReadonly,
	"blocking":    flagBlocking,
	"pubsub":      flagPubSub,
	"admin":       flagAdmin,
	"movablekeys": flagMovable,
}

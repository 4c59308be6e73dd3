package process

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// warnSecretsReadable warns, at start and on every reload, when the
// configuration holds passwords or password digests (redis_auth, user
// blocks, server and sentinel passwords) and every user can read its file.
func warnSecretsReadable(cfg *config.Config, log *logrus.Entry) bool {
	if cfg.File == "" || !cfg.HasSecrets() {
		return false
	}
	fi, err := os.Stat(cfg.File)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		return false
	}
	log.WithFields(logrus.Fields{"file": cfg.File, "mode": fmt.Sprintf("%04o", fi.Mode().Perm())}).
		Warn("the configuration holds passwords and is readable by every user; chmod o-r it (the workers need not read it)")
	return true
}

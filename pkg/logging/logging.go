// Package logging configures logrus for nuthatch: text or JSON on stderr, or
// journald's native protocol when stderr is connected to the journal, so
// that structured fields (role, worker, pool, server) become journal fields
// and each record carries the PID of the process that wrote it.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/sirupsen/logrus"
)

// Formats accepted by Setup.
const (
	FormatAuto     = "auto"
	FormatJournald = "journald"
	FormatText     = "text"
	FormatJSON     = "json"
)

// Setup configures log for level and format. With FormatAuto it picks the
// journal when stderr is the journal stream, else text.
func Setup(log *logrus.Logger, level, format string) error {
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	log.SetLevel(lvl)
	if format == FormatAuto || format == "" {
		format = FormatText
		if isJournal, _ := journal.StderrIsJournalStream(); isJournal && journal.Enabled() {
			format = FormatJournald
		}
	}
	log.ReplaceHooks(make(logrus.LevelHooks))
	switch format {
	case FormatJournald:
		if !journal.Enabled() {
			return fmt.Errorf("logging: journald is not available")
		}
		log.SetOutput(io.Discard)
		log.AddHook(&JournalHook{})
	case FormatText:
		log.SetOutput(os.Stderr)
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	case FormatJSON:
		log.SetOutput(os.Stderr)
		log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("logging: unknown format %q", format)
	}
	return nil
}

// JournalHook sends every record to journald over its native protocol.
type JournalHook struct{}

// Levels implements logrus.Hook.
func (*JournalHook) Levels() []logrus.Level { return logrus.AllLevels }

// Fire implements logrus.Hook.
func (*JournalHook) Fire(e *logrus.Entry) error {
	vars := make(map[string]string, len(e.Data)+1)
	vars["SYSLOG_IDENTIFIER"] = "nuthatch"
	for k, v := range e.Data {
		if k == logrus.ErrorKey {
			if err, ok := v.(error); ok {
				vars["ERROR"] = err.Error()
				continue
			}
		}
		vars[FieldName(k)] = fmt.Sprint(v)
	}
	return journal.Send(e.Message, Priority(e.Level), vars)
}

// Priority maps a logrus level to a syslog priority.
func Priority(l logrus.Level) journal.Priority {
	switch l {
	case logrus.PanicLevel:
		return journal.PriAlert
	case logrus.FatalLevel:
		return journal.PriCrit
	case logrus.ErrorLevel:
		return journal.PriErr
	case logrus.WarnLevel:
		return journal.PriWarning
	case logrus.InfoLevel:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}

// FieldName turns a logrus field into a valid journal field name:
// uppercase letters, digits and underscores, not starting with an
// underscore (those are trusted fields set by journald itself).
func FieldName(k string) string {
	var b strings.Builder
	for _, r := range k {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		s = "F_" + s
	}
	return s
}

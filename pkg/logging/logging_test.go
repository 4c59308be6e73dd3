package logging

import (
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/sirupsen/logrus"
)

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"role":        "ROLE",
		"pool":        "POOL",
		"retry_after": "RETRY_AFTER",
		"_pid":        "PID",
		"a-b.c":       "A_B_C",
		"9lives":      "F_9LIVES",
		"":            "F_",
	} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPriority(t *testing.T) {
	for l, want := range map[logrus.Level]journal.Priority{
		logrus.ErrorLevel: journal.PriErr,
		logrus.WarnLevel:  journal.PriWarning,
		logrus.InfoLevel:  journal.PriInfo,
		logrus.DebugLevel: journal.PriDebug,
		logrus.TraceLevel: journal.PriDebug,
		logrus.FatalLevel: journal.PriCrit,
	} {
		if got := Priority(l); got != want {
			t.Errorf("Priority(%v) = %v, want %v", l, got, want)
		}
	}
}

func TestSetupRejectsUnknown(t *testing.T) {
	if err := Setup(logrus.New(), "loud", "text"); err == nil {
		t.Error("bad level accepted")
	}
	if err := Setup(logrus.New(), "info", "xml"); err == nil {
		t.Error("bad format accepted")
	}
	if err := Setup(logrus.New(), "debug", "json"); err != nil {
		t.Errorf("json: %v", err)
	}
}

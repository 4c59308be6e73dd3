package process

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func aclUser(name, pw string, commands ...string) string {
	sum := sha256.Sum256([]byte(pw))
	return fmt.Sprintf("  user %q {\n    password_sha256 = %q\n    commands = [%s]\n    keys = [\"allkeys\"]\n  }\n",
		name, hex.EncodeToString(sum[:]), `"`+strings.Join(commands, `", "`)+`"`)
}

// TestHandOverACLUsersAcrossReloads, on the real binary: a client logged
// in as an ACL user keeps its socket and its user through a reload, under
// the new rules of that user; one whose user got another password is
// closed; a new client authenticates against the new configuration.
func TestHandOverACLUsersAcrossReloads(t *testing.T) {
	r := newHoRig(t)
	users := aclUser("app", "app-pw", "+@read", "+@write") + aclUser("rep", "rep-pw", "+@read")
	r.start(t, hoConf{main: users})
	app, rep := dialResp(t, r.addr("main")), dialResp(t, r.addr("main"))
	for c, auth := range map[*respConn][]string{app: {"AUTH", "app", "app-pw"}, rep: {"AUTH", "rep", "rep-pw"}} {
		if got, err := c.do(auth...); err != nil || got != "+OK" {
			t.Fatalf("%v: %q %v", auth, got, err)
		}
	}
	if got, err := app.do("SET", "acl:k", "v"); err != nil || got != "+OK" {
		t.Fatalf("SET: %q %v", got, err)
	}
	// Reload 1: app may no longer write, rep's password changes.
	r.write(t, hoConf{main: aclUser("app", "app-pw", "+@read") + aclUser("rep", "rep-new", "+@read")})
	r.reload(t)
	if got, err := app.do("GET", "acl:k"); err != nil || got != "$v" {
		t.Fatalf("app's GET after the reload: %q %v", got, err)
	}
	if got, err := app.do("SET", "acl:k", "w"); err != nil || got != "-NOPERM this user has no permissions to run the 'set' command" {
		t.Fatalf("app's SET under the new rules: %q %v", got, err)
	}
	if got, err := rep.do("GET", "acl:k"); !errors.Is(err, io.EOF) {
		t.Fatalf("rep, whose password changed, was not closed: %q %v", got, err)
	}
	fresh := dialResp(t, r.addr("main"))
	if got, _ := fresh.do("AUTH", "rep", "rep-pw"); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Fatalf("the old password after the reload: %q", got)
	}
	if got, _ := fresh.do("AUTH", "rep", "rep-new"); got != "+OK" {
		t.Fatalf("the new password: %q", got)
	}
	// The counters reach the master every stats interval (200 ms here).
	deadline := time.Now().Add(5 * time.Second)
	for r.metric(t, "nuthatch_pool_client_handover_refused_total", "main") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the closed client is not counted in client_handover_refused")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for r.metric(t, "nuthatch_pool_acl_denied_command_total", "main") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the NOPERM is not counted in acl_denied_command")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package process

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// TLS in the master: the configuration's loader has read and checked every
// certificate, key and CA already (a bad one fails the reload before this).
// Here: a reload whose configuration text is the same and whose TLS files
// changed swaps the material inside the running workers (no generation, no
// connection closed); session ticket keys made here are given to every
// worker so that a client resumes on any of them; expiry and key file
// permissions are warned about.

// expiryWarning is how long before a certificate's end the journal hears.
const expiryWarning = 14 * 24 * time.Hour

// ticketRotation is how often a new session ticket key is made; the two
// before it still decrypt, so a ticket lives up to three periods.
const ticketRotation = 12 * time.Hour

type ticketKeyring struct {
	keys [][]byte // newest first
	made time.Time
}

func (k *ticketKeyring) rotate(now time.Time) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(fmt.Sprintf("process: crypto/rand: %v", err))
	}
	k.keys = append([][]byte{key}, k.keys...)
	if len(k.keys) > 3 {
		k.keys = k.keys[:3]
	}
	k.made = now
}

func hasTLS(cfg *config.Config) bool {
	for _, p := range cfg.Pools {
		if p.TLS != nil || p.ServerTLS != nil {
			return true
		}
	}
	return false
}

// ticketKeysFor is the keys a worker of cfg gets: none without TLS.
func (m *Master) ticketKeysFor(cfg *config.Config) [][]byte {
	if !hasTLS(cfg) {
		return nil
	}
	if m.tickets.keys == nil {
		m.tickets.rotate(time.Now())
	}
	return m.tickets.keys
}

// tlsFiles lists every TLS file of cfg, in order.
func tlsFiles(cfg *config.Config) []string {
	var files []string
	for _, p := range cfg.Pools {
		if t := p.TLS; t != nil {
			files = append(files, t.Cert, t.Key, t.ClientCA)
		}
		if t := p.ServerTLS; t != nil {
			files = append(files, t.CA, t.Cert, t.Key)
		}
	}
	return files
}

// tlsFingerprint hashes the contents of cfg's TLS files, as loaded.
func tlsFingerprint(cfg *config.Config) [32]byte {
	h := sha256.New()
	for _, f := range tlsFiles(cfg) {
		b := cfg.TLSFiles[f]
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// certsOnly: cfg (validated, its files loaded) differs from the running
// generation's only in the contents of its TLS files.
func (m *Master) certsOnly(cfg *config.Config, src []byte) bool {
	g := m.cur
	if g == nil || !hasTLS(cfg) || !bytes.Equal(src, g.src) || cfg.File != g.cfg.File {
		return false
	}
	return tlsFingerprint(cfg) != g.tlsPrint
}

// reloadTLS swaps the certificates inside the running workers.
func (m *Master) reloadTLS(cfg *config.Config) {
	g := m.cur
	g.tlsPrint = tlsFingerprint(cfg)
	g.cfg = cfg
	m.checkTLS(cfg)
	m.broadcast(&Message{Type: MsgTLS, Reload: true, TicketKeys: m.ticketKeysFor(cfg), TLSFiles: cfg.TLSFiles})
	m.entry.WithField("generation", g.id).Info("reload: only TLS certificates changed; swapped inside the running workers")
	m.notify("READY=1\n" + m.status())
	m.reloadDone("")
}

// checkTLS warns about key files others can read and certificates near
// their end.
func (m *Master) checkTLS(cfg *config.Config) {
	now := time.Now()
	m.expiryAt = now
	for _, p := range cfg.Pools {
		var keys []string
		if p.TLS != nil {
			keys = append(keys, p.TLS.Key)
			if left := p.TLS.NotAfter.Sub(now); !p.TLS.NotAfter.IsZero() && left < expiryWarning {
				e := m.entry.WithFields(logrus.Fields{"pool": p.Name, "cert": p.TLS.Cert, "not_after": p.TLS.NotAfter.UTC().Format(time.RFC3339)})
				if left <= 0 {
					e.Error("TLS certificate has expired")
				} else {
					e.WithField("days_left", int(left.Hours()/24)).Warn("TLS certificate expires soon")
				}
			}
		}
		if p.ServerTLS != nil && p.ServerTLS.Key != "" {
			keys = append(keys, p.ServerTLS.Key)
		}
		for _, k := range keys {
			if fi, err := os.Stat(k); err == nil && fi.Mode().Perm()&0o004 != 0 {
				m.entry.WithFields(logrus.Fields{"pool": p.Name, "key": k, "mode": fmt.Sprintf("%04o", fi.Mode().Perm())}).
					Warn("TLS private key is readable by every user; chmod o-r it")
			}
		}
	}
}

// tlsTick rotates the session ticket keys and checks expiry once a day.
func (m *Master) tlsTick(now time.Time) {
	g := m.cur
	if g == nil || !hasTLS(g.cfg) {
		return
	}
	if now.Sub(m.tickets.made) >= ticketRotation {
		m.tickets.rotate(now)
		m.broadcast(&Message{Type: MsgTLS, TicketKeys: m.tickets.keys})
	}
	if now.Sub(m.expiryAt) >= 24*time.Hour {
		m.checkTLS(g.cfg)
	}
}

// ticketKeys converts the keys of a message.
func ticketKeys(in [][]byte) [][32]byte {
	out := make([][32]byte, 0, len(in))
	for _, k := range in {
		if len(k) == 32 {
			out = append(out, [32]byte(k))
		}
	}
	return out
}

// onTLS: the master sent new session ticket keys, or asks for the
// certificate files to be read again.
func (w *worker) onTLS(m *Message) {
	if len(m.TicketKeys) > 0 {
		w.px.SetSessionTicketKeys(ticketKeys(m.TicketKeys))
	}
	if m.Reload {
		if err := w.px.ReloadTLS(m.TLSFiles); err != nil {
			w.entry.WithError(err).Error("TLS reload failed; the previous certificates stay in use")
			return
		}
		w.entry.Info("TLS certificates reloaded")
	}
}

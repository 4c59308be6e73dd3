package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/tlsconn/tlstest"
	"github.com/nuthatch-proxy/nuthatch/test/harness"
)

// TestTLSNodeClients: ioredis and node-redis with TLS options through a
// nuthatch TLS listener (certificates made by the test), pipelines and
// values of a few hundred KB included.
func TestTLSNodeClients(t *testing.T) {
	harness.Need(t, "redis-server", "node")
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	leaf := ca.Leaf(t, "proxy", "localhost")
	be := harness.Redis(t)
	port := harness.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	harness.Nuthatch(t, fmt.Sprintf(`worker_processes = 2
stats {
  listen = ""
}
pool "tls" {
  listen = %q
  protocol = "redis"
  tls {
    cert = %q
    key = %q
  }
  server %q {}
}
`, addr, leaf.CertFile, leaf.KeyFile, be.Addr), addr)
	_, file, _, _ := runtime.Caller(0)
	nodeDir := filepath.Join(filepath.Dir(file), "..", "clients", "node")
	script := `
const fs = require('fs');
const [mod, port, caFile] = process.argv.slice(1);
const ca = fs.readFileSync(caFile);
const big = 'v'.repeat(300000);
async function main() {
  if (mod.startsWith('ioredis')) {
    const Redis = require(mod);
    const r = new Redis({ host: '127.0.0.1', port: +port, tls: { ca, servername: 'localhost' }, maxRetriesPerRequest: 1 });
    await r.set('node:io', big);
    if ((await r.get('node:io')) !== big) throw new Error('big value');
    const p = r.pipeline();
    for (let i = 0; i < 100; i++) { p.set('node:io' + i, i); p.get('node:io' + i); }
    const res = await p.exec();
    for (let i = 0; i < 100; i++) if (res[2 * i + 1][1] !== String(i)) throw new Error('pipeline ' + i);
    r.disconnect();
  } else {
    const { createClient } = require(mod);
    const c = createClient({ socket: { host: '127.0.0.1', port: +port, tls: true, ca, servername: 'localhost' } });
    c.on('error', () => {});
    await c.connect();
    await c.set('node:nr', big);
    if ((await c.get('node:nr')) !== big) throw new Error('big value');
    await c.quit();
  }
  console.log('ok');
}
main().catch(e => { console.error(e.message); process.exit(1); });
`
	for _, mod := range []string{"ioredis5", "redis4"} {
		cmd := exec.Command("node", "-e", script, mod, fmt.Sprint(port), ca.File)
		cmd.Dir = nodeDir
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Errorf("%s over TLS: %v\n%s", mod, err, out)
		}
	}
}

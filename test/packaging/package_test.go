package packaging

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
)

// unitValues returns the values of key in an INI-style systemd unit file.
func unitValues(t *testing.T, file, key string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vals []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && strings.TrimSpace(k) == key {
			vals = append(vals, strings.TrimSpace(v))
		}
	}
	return vals
}

// The packaged configuration must parse, proxy the distribution's servers,
// and listen on exactly the sockets nuthatch.socket holds.
func TestDefaultConfigMatchesUnits(t *testing.T) {
	cfg, err := config.Load(filepath.Join(repoRoot, "packaging", "nuthatch.hcl"))
	if err != nil {
		t.Fatalf("packaging/nuthatch.hcl: %v", err)
	}

	var listens []string
	for _, p := range cfg.Pools {
		listens = append(listens, p.Listen.String())
	}
	socket := unitValues(t, filepath.Join(repoRoot, "systemd", "nuthatch.socket"), "ListenStream")
	streams := slices.Compact(slices.Sorted(slices.Values(socket)))
	slices.Sort(listens)
	if !slices.Equal(listens, streams) {
		t.Errorf("pool listen addresses %q differ from nuthatch.socket's ListenStream= %q", listens, streams)
	}

	want := map[string]struct {
		protocol config.Protocol
		listen   string
		server   string
	}{
		"redis":    {config.ProtocolRedis, "127.0.0.1:22121", "127.0.0.1:6379"},
		"memcache": {config.ProtocolMemcache, "127.0.0.1:22122", "127.0.0.1:11211"},
	}
	if len(cfg.Pools) != len(want) {
		t.Errorf("%d pools, want %d", len(cfg.Pools), len(want))
	}
	for _, p := range cfg.Pools {
		w, ok := want[p.Name]
		if !ok {
			t.Errorf("unexpected pool %q", p.Name)
			continue
		}
		if p.Protocol != w.protocol || p.Listen.String() != w.listen || len(p.Servers) != 1 || p.Servers[0].Address.String() != w.server {
			t.Errorf("pool %q: protocol %s listen %s servers %v; want %s on %s to %s",
				p.Name, p.Protocol, p.Listen, p.Servers, w.protocol, w.listen, w.server)
		}
	}
	if cfg.Stats.Listen != "127.0.0.1:22222" {
		t.Errorf("stats listen %q, want 127.0.0.1:22222", cfg.Stats.Listen)
	}

	// pid_file lives in the service's RuntimeDirectory= (created for it,
	// owned by its User=), where `nuthatch -s reload -w` looks.
	service := filepath.Join(repoRoot, "systemd", "nuthatch.service")
	rt := unitValues(t, service, "RuntimeDirectory")
	if cfg.PidFile != "/run/nuthatch/nuthatch.pid" || !slices.Equal(rt, []string{"nuthatch"}) {
		t.Errorf("pid_file %q with RuntimeDirectory=%q; want /run/nuthatch/nuthatch.pid in RuntimeDirectory=nuthatch", cfg.PidFile, rt)
	}
	for _, key := range []string{"ExecStartPre", "ExecStart", "ExecReload"} {
		for _, v := range unitValues(t, service, key) {
			if !strings.Contains(v, config.DefaultPath) {
				t.Errorf("%s=%s does not use %s", key, v, config.DefaultPath)
			}
		}
	}
	if u := unitValues(t, service, "User"); !slices.Equal(u, []string{"nuthatch"}) {
		t.Errorf("User=%q, want nuthatch (packaging/sysusers.d/nuthatch.conf)", u)
	}
	sysusers, err := os.ReadFile(filepath.Join(repoRoot, "packaging", "sysusers.d", "nuthatch.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^u\s+nuthatch\s`).Match(sysusers) {
		t.Errorf("sysusers.d/nuthatch.conf does not create the nuthatch user:\n%s", sysusers)
	}
}

// The maintainer scripts are POSIX sh: dash must parse them, and shellcheck
// (when installed) must find nothing.
func TestMaintainerScriptsAreShell(t *testing.T) {
	scripts, _ := filepath.Glob(filepath.Join(repoRoot, "packaging", "scripts", "*", "*"))
	helpers, _ := filepath.Glob(filepath.Join(repoRoot, "packaging", "scripts", "*.sh"))
	scripts = append(scripts, helpers...)
	scripts = append(scripts, filepath.Join(repoRoot, "packaging", "version.sh"))
	if len(scripts) < 8 {
		t.Fatalf("found only %d scripts: %v", len(scripts), scripts)
	}
	need(t, "dash")
	for _, s := range scripts {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "#!/bin/sh\n") {
			t.Errorf("%s: does not start with #!/bin/sh", s)
		}
		if st, _ := os.Stat(s); st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s: not executable", s)
		}
		if out, err := exec.Command("dash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("dash -n %s: %v\n%s", s, err, out)
		}
	}
	if _, err := exec.LookPath("shellcheck"); err == nil {
		args := append([]string{"-s", "sh"}, scripts...)
		if out, err := exec.Command("shellcheck", args...).CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	}
}

func TestVersionScript(t *testing.T) {
	v := filepath.Join(repoRoot, "packaging", "version.sh")
	for in, want := range map[string]string{
		"1.2.3":       "1.2.3",
		"v1.2.3":      "1.2.3",
		"1.2.0-rc1":   "1.2.0~rc1",
		"0.0.0~git5":  "0.0.0~git5",
		"2.0+dirty.1": "2.0+dirty.1",
	} {
		out, err := exec.Command(v, in).Output()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("version.sh %s = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"x1", "1.0 beta", "1/2", "1_0"} {
		if out, err := exec.Command(v, bad).Output(); err == nil {
			t.Errorf("version.sh %q accepted: %q", bad, out)
		}
	}
	// From git (this tree): a valid version either way.
	out, err := exec.Command(v).Output()
	if err != nil || !regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]*\n$`).Match(out) {
		t.Errorf("version.sh from git = %q, %v", out, err)
	}
}

// debFiles lists the paths in a .deb's data archive (without "./").
func debFiles(t *testing.T, deb string) []string {
	t.Helper()
	var files []string
	for _, line := range strings.Split(run(t, "dpkg-deb", "--contents", deb), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 {
			files = append(files, strings.TrimPrefix(f[5], "."))
		}
	}
	return files
}

var packagedFiles = []string{
	"/usr/bin/nuthatch",
	"/usr/lib/systemd/system/nuthatch.service",
	"/usr/lib/systemd/system/nuthatch.socket",
	"/usr/lib/sysusers.d/nuthatch.conf",
	"/usr/libexec/nuthatch/upgrade-service",
	"/etc/nuthatch/nuthatch.hcl",
	"/usr/share/man/man8/nuthatch.8.gz",
	"/usr/share/man/man5/nuthatch.hcl.5.gz",
	"/usr/share/doc/nuthatch/copyright",
	"/usr/share/doc/nuthatch/configuration.md.gz",
	"/usr/share/doc/nuthatch/examples/example.hcl",
}

func TestDebPackage(t *testing.T) {
	need(t, "dpkg-deb")
	deb := packages(t, versionA)["deb"]

	files := debFiles(t, deb)
	for _, f := range append(packagedFiles, "/usr/share/doc/nuthatch/changelog.Debian.gz") {
		if !slices.Contains(files, f) {
			t.Errorf("%s missing from the .deb", f)
		}
	}
	if got := strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, "Version")); got != versionA+"-1" {
		t.Errorf("Version %q, want %s-1", got, versionA)
	}
	// The configuration is a conffile: dpkg keeps local edits on upgrade.
	dir := t.TempDir()
	run(t, "dpkg-deb", "--control", deb, dir)
	conffiles, _ := os.ReadFile(filepath.Join(dir, "conffiles"))
	if strings.TrimSpace(string(conffiles)) != "/etc/nuthatch/nuthatch.hcl" {
		t.Errorf("conffiles = %q, want /etc/nuthatch/nuthatch.hcl", conffiles)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if _, err := os.Stat(filepath.Join(dir, s)); err != nil {
			t.Errorf("maintainer script %s: %v", s, err)
		}
	}
	// The binary is the one the package version says.
	bin := filepath.Join(t.TempDir(), "x")
	run(t, "dpkg-deb", "--extract", deb, bin)
	if out := run(t, filepath.Join(bin, "usr", "bin", "nuthatch"), "-V"); strings.TrimSpace(out) != "nuthatch "+versionA {
		t.Errorf("nuthatch -V = %q, want version %s", out, versionA)
	}
	if out, err := exec.Command(filepath.Join(bin, "usr", "bin", "nuthatch"), "-t", "-c", filepath.Join(bin, "etc", "nuthatch", "nuthatch.hcl")).CombinedOutput(); err != nil {
		t.Errorf("the packaged binary rejects the packaged configuration: %v\n%s", err, out)
	}
}

// lintian must report no error; warnings are logged.
func TestLintian(t *testing.T) {
	need(t, "lintian")
	deb := packages(t, versionA)["deb"]
	out, _ := exec.Command("lintian", "--fail-on", "none", deb).CombinedOutput()
	var errs, rest []string
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "E: "):
			errs = append(errs, l)
		case l != "" && !strings.Contains(l, "running with root privileges"):
			rest = append(rest, l)
		}
	}
	if len(errs) > 0 {
		t.Errorf("lintian errors:\n%s", strings.Join(errs, "\n"))
	}
	if len(rest) > 0 {
		t.Logf("lintian:\n%s", strings.Join(rest, "\n"))
	}
}

func TestRPMPackage(t *testing.T) {
	need(t, "rpm")
	pkg := packages(t, versionA)["rpm"]

	list := strings.Fields(run(t, "rpm", "-qp", "--list", pkg))
	for _, f := range append(packagedFiles, "/etc/nuthatch", "/usr/libexec/nuthatch", "/usr/share/doc/nuthatch") {
		if !slices.Contains(list, f) {
			t.Errorf("%s missing from the .rpm", f)
		}
	}
	// %config(noreplace): the "n" flag in --dump is not shown by rpm -qp;
	// --configfiles and the file flags are.
	if got := strings.TrimSpace(run(t, "rpm", "-qp", "--configfiles", pkg)); got != "/etc/nuthatch/nuthatch.hcl" {
		t.Errorf("config files %q", got)
	}
	flags := run(t, "rpm", "-qp", "--queryformat", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", pkg)
	if !regexp.MustCompile(`(?m)^/etc/nuthatch/nuthatch.hcl cn$`).MatchString(flags) {
		t.Errorf("nuthatch.hcl is not %%config(noreplace):\n%s", flags)
	}
	if got := strings.TrimSpace(run(t, "rpm", "-qp", "--queryformat", "%{VERSION}-%{RELEASE}", pkg)); got != versionA+"-1" {
		t.Errorf("version %q, want %s-1", got, versionA)
	}

	scripts := run(t, "rpm", "-qp", "--scripts", pkg)
	for _, want := range []string{
		"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "posttrans scriptlet",
		"systemctl enable --now nuthatch.socket", // %post, $1 = 1
		"/var/lib/rpm-state/nuthatch/upgrade",    // %post $1 = 2 -> %posttrans
		"/usr/libexec/nuthatch/upgrade-service",  // %posttrans
	} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm scripts lack %q:\n%s", want, scripts)
		}
	}
	if strings.Contains(scripts, "restart nuthatch.socket") || strings.Contains(scripts, "try-restart") {
		t.Errorf("rpm scripts restart units on upgrade:\n%s", scripts)
	}
}

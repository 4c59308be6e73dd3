// Command nuthatch is a sharding proxy for Redis and memcached, compatible
// with twemproxy's configuration semantics and key placement.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/cluster"
	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/convert"
	"github.com/nuthatch-proxy/nuthatch/pkg/logging"
	"github.com/nuthatch-proxy/nuthatch/pkg/process"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
	"github.com/nuthatch-proxy/nuthatch/pkg/sentinel"
	"github.com/nuthatch-proxy/nuthatch/pkg/systemd"
)

// version is stamped by the Makefile (-ldflags "-X main.version=…").
var version = "dev"

const usage = `Usage: nuthatch [-c FILE] [-t [-q]] [-s SIGNAL [-w]] [-V] [-h]
       nuthatch convert NUTCRACKER.yml
       nuthatch stats [-c FILE] [--json] [--once]

Options:
  -c FILE     configuration file (default %s)
  -t          check the configuration and exit
  -q          with -t: print nothing when the configuration is valid
  -s SIGNAL   send SIGNAL to the running master: reload, reopen, quit, stop, upgrade
  -w          with -s reload: wait until the reload succeeded or failed
  -V          print the version and exit
  -h          print this help and exit

Commands:
  convert     convert a twemproxy (nutcracker) YAML configuration to HCL
  stats       show the running service's counters per pool and server
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	proxy.Version = version
	if process.IsWorker() {
		return process.RunWorker()
	}
	if len(args) > 0 {
		switch args[0] {
		case "convert":
			return convertCmd(args[1:], stdout, stderr)
		case "stats":
			return statsCmd(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("nuthatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, usage, config.DefaultPath) }
	file := fs.String("c", config.DefaultPath, "configuration file")
	test := fs.Bool("t", false, "check the configuration")
	quiet := fs.Bool("q", false, "quiet -t")
	wait := fs.Bool("w", false, "wait for the reload")
	sig := fs.String("s", "", "signal the master")
	ver := fs.Bool("V", false, "print the version")
	help := fs.Bool("h", false, "help")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nuthatch: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	switch {
	case *help:
		fmt.Fprintf(stdout, usage, config.DefaultPath)
		return 0
	case *ver:
		fmt.Fprintf(stdout, "nuthatch %s\n", version)
		return 0
	}

	src, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "nuthatch: %v\n", err)
		return 1
	}
	cfg, err := config.Parse(src, *file)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	if *test && *quiet {
		return 0
	}
	if *test {
		fmt.Fprintf(stdout, "nuthatch: the configuration file %s syntax is ok\nnuthatch: configuration file %s test is successful\n", *file, *file)
		return 0
	}
	if *sig != "" {
		send := process.SendSignal
		if *wait && *sig == "reload" {
			send = func(pidFile, _ string) error { return process.ReloadAndWait(pidFile, 2*time.Minute) }
		}
		if err := send(cfg.PidFile, *sig); err != nil {
			fmt.Fprintf(stderr, "nuthatch: %v\n", err)
			return 1
		}
		return 0
	}

	log := logrus.New()
	if err := logging.Setup(log, cfg.Log.Level, cfg.Log.Format); err != nil {
		fmt.Fprintf(stderr, "nuthatch: %v\n", err)
		return 1
	}
	log.WithField("version", version).WithField("config", *file).Info("nuthatch starting")
	notifier := systemd.NewNotifier()
	m := &process.Master{
		Log:              log,
		Spawner:          &process.ExecSpawner{},
		ConfigPath:       *file,
		Binary:           binaryPath(),
		Args:             args,
		Notify:           func(state string) { notifier.Notify(state) },
		NotifySocket:     notifier.Socket(),
		Barrier:          notifier.Barrier,
		WatchdogInterval: systemd.WatchdogInterval(),
		Topology:         process.SentinelTopology(sentinel.New(log.WithField("role", "master"))),
		Cluster:          process.ClusterTopology(cluster.New(log.WithField("role", "master"))),
	}
	os.Unsetenv("WATCHDOG_USEC")
	os.Unsetenv("WATCHDOG_PID")
	if parent, socks := process.Upgrading(); parent != nil {
		m.Parent, m.Inherited = parent, socks
	} else {
		for _, s := range systemd.Sockets() {
			m.Inherited = append(m.Inherited, process.Inherited{File: s.File, Name: s.Name, FromSystemd: true})
		}
	}
	if err := m.Run(cfg, src); err != nil {
		log.WithError(err).Error("nuthatch stopped")
		return 1
	}
	return 0
}

func printConfigError(w io.Writer, err error) {
	var le *config.LoadError
	if errors.As(err, &le) {
		// One line per problem with file:line,col, then the excerpts.
		for _, line := range strings.Split(le.Error(), "\n") {
			fmt.Fprintf(w, "nuthatch: %s\n", line)
		}
		fmt.Fprintln(w)
		le.WriteText(w, 100, false)
		fmt.Fprintf(w, "nuthatch: configuration file test failed\n")
		return
	}
	fmt.Fprintf(w, "nuthatch: %v\n", err)
}

func convertCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, "Usage: nuthatch convert NUTCRACKER.yml (or - for standard input)")
		fmt.Fprintln(stderr, "Writes the HCL configuration to standard output and warnings to standard error.")
		return 2
	}
	name := args[0]
	var src []byte
	var err error
	if name == "-" {
		name = "<stdin>"
		src, err = io.ReadAll(os.Stdin)
	} else {
		src, err = os.ReadFile(name)
	}
	if err != nil {
		fmt.Fprintf(stderr, "nuthatch: convert: %v\n", err)
		return 1
	}
	out, warnings, err := convert.Convert(src, name)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "nuthatch: warning: %s\n", w)
	}
	if err != nil {
		var list convert.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				fmt.Fprintf(stderr, "nuthatch: %v\n", e)
			}
		} else {
			fmt.Fprintf(stderr, "nuthatch: %v\n", err)
		}
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "nuthatch: convert: %v\n", err)
		return 1
	}
	return 0
}

// binaryPath is the absolute path this program was started as: the file a
// package upgrade replaces and a binary upgrade executes.
func binaryPath() string {
	p, err := exec.LookPath(os.Args[0])
	if err != nil {
		return ""
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return ""
	}
	return abs
}

// Command nuthatch is a sharding proxy for Redis and memcached, compatible
// with twemproxy's configuration semantics and key placement.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/logging"
	"github.com/nuthatch-proxy/nuthatch/pkg/process"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// version is stamped by the Makefile (-ldflags "-X main.version=…").
var version = "dev"

const usage = `Usage: nuthatch [-c FILE] [-t] [-s SIGNAL] [-V] [-h]
       nuthatch convert NUTCRACKER.yml

Options:
  -c FILE     configuration file (default %s)
  -t          check the configuration and exit
  -s SIGNAL   send SIGNAL to the running master: reload, reopen, quit, stop, upgrade
  -V          print the version and exit
  -h          print this help and exit

Commands:
  convert     convert a twemproxy (nutcracker) YAML configuration to HCL
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	proxy.Version = version
	if process.IsWorker() {
		return process.RunWorker()
	}
	if len(args) > 0 && args[0] == "convert" {
		return convertCmd(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("nuthatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, usage, config.DefaultPath) }
	file := fs.String("c", config.DefaultPath, "configuration file")
	test := fs.Bool("t", false, "check the configuration")
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
	if *test {
		fmt.Fprintf(stdout, "nuthatch: the configuration file %s syntax is ok\nnuthatch: configuration file %s test is successful\n", *file, *file)
		return 0
	}
	if *sig != "" {
		if err := process.SendSignal(cfg.PidFile, *sig); err != nil {
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
	m := &process.Master{Log: log, Spawner: &process.ExecSpawner{}, ConfigPath: *file}
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
	fmt.Fprintln(stderr, "nuthatch: convert is not available yet")
	return 1
}

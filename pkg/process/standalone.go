// Package process runs nuthatch's processes: the standalone server used
// until the master/worker model takes over, and the signal plumbing shared
// by both.
package process

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/nuthatch-proxy/nuthatch/pkg/config"
	"github.com/nuthatch-proxy/nuthatch/pkg/listener"
	"github.com/nuthatch-proxy/nuthatch/pkg/proxy"
)

// Standalone serves cfg in this process until a stop signal arrives.
func Standalone(cfg *config.Config, log *logrus.Logger) error {
	entry := log.WithField("role", "standalone")
	px, err := proxy.New(cfg, entry)
	if err != nil {
		return err
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, pc := range cfg.Pools {
		f, err := listener.Open(pc.Listen, listener.Options{Backlog: pc.Backlog})
		if err != nil {
			return fmt.Errorf("pool %s: %w", pc.Name, err)
		}
		ln, err := listener.FromFile(f)
		f.Close()
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		if err := px.Serve(pc.Name, ln); err != nil {
			return err
		}
		entry.WithField("pool", pc.Name).WithField("listen", pc.Listen.String()).Info("listening")
	}
	px.Start()
	if cfg.PidFile != "" {
		if err := WritePidFile(cfg.PidFile); err != nil {
			return err
		}
		defer os.Remove(cfg.PidFile)
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGTTIN, syscall.SIGTTOU)
	defer signal.Stop(sigs)
	for sig := range sigs {
		switch sig {
		case syscall.SIGTTIN:
			if l := log.GetLevel(); l < logrus.TraceLevel {
				log.SetLevel(l + 1)
			}
			entry.WithField("level", log.GetLevel().String()).Warn("log level raised")
		case syscall.SIGTTOU:
			if l := log.GetLevel(); l > logrus.ErrorLevel {
				log.SetLevel(l - 1)
			}
			entry.WithField("level", log.GetLevel().String()).Warn("log level lowered")
		case syscall.SIGINT:
			entry.Info("fast stop")
			px.Close()
			return nil
		default:
			entry.WithField("signal", sig.String()).Info("graceful stop")
			ctx, cancel := context.WithTimeout(context.Background(), cfg.WorkerShutdownTimeout)
			err := px.Shutdown(ctx)
			cancel()
			if err != nil {
				entry.WithError(err).Warn("shutdown timeout reached, closed remaining clients")
			}
			return nil
		}
	}
	return nil
}

// WritePidFile writes the pid atomically (write then rename).
func WritePidFile(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("process: pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("process: pid file: %w", err)
	}
	return nil
}

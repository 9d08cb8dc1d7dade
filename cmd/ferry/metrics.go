package main

import (
	"net"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/metrics"
)

// serveMetrics starts the --metrics-addr server (docs/metrics.md) and sets o.Metrics;
// the returned stop closes it. Without the flag it does nothing.
func (g *globals) serveMetrics(o *migrate.Options) (stop func(), err error) {
	if g.metricsAddr == "" {
		return func() {}, nil
	}
	if _, _, err := net.SplitHostPort(g.metricsAddr); err != nil {
		return nil, usagef("--metrics-addr %q: want HOST:PORT, for example 127.0.0.1:9464 or :9464", g.metricsAddr)
	}
	met := metrics.New()
	met.SetVersion(version)
	srv, err := met.Listen(g.metricsAddr)
	if err != nil {
		return nil, migrate.Errorf(migrate.ExitRuntime, "--metrics-addr %s: %v", g.metricsAddr, err)
	}
	g.log.Info("serving metrics", "url", "http://"+srv.Addr()+"/metrics")
	o.Metrics = met
	return func() { _ = srv.Close() }, nil
}

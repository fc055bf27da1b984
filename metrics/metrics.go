// Package metrics exports the service's metrics for Prometheus through the
// OpenTelemetry SDK, from a registry of its own (never the process-global
// one, so that several servers in one process, as in tests, do not mix).
package metrics

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Exporter is a meter provider whose instruments are served at Handler.
type Exporter struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

// New returns an exporter with an empty registry.
func New() (*Exporter, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, err
	}
	return &Exporter{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
	}, nil
}

// Meter returns the service's meter.
func (e *Exporter) Meter() metric.Meter { return e.provider.Meter("qscheduler-swarming") }

// Handler serves the metrics in Prometheus' text format (GET /metrics).
func (e *Exporter) Handler() http.Handler { return e.handler }

// Shutdown stops the provider.
func (e *Exporter) Shutdown(ctx context.Context) error { return e.provider.Shutdown(ctx) }

package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// clients are the RPC clients of one transport.
type clients struct {
	sw    swarmingv1.ExternalSchedulerClient
	admin qschedulerv1.QSchedulerAdminClient
	view  qschedulerv1.QSchedulerViewClient
	close func()
}

func (c *Config) target() string {
	if c.Transport == "grpc" {
		return c.GRPCAddr
	}
	return "http://" + c.HTTPAddr
}

// dial returns clients of the configured transport. For gRPC, fastRetry
// shortens the reconnection backoff (startup measurements).
func dial(c *Config, httpAddr, grpcAddr string, fastRetry bool) (*clients, error) {
	var cc grpc.ClientConnInterface
	var closeFn func()
	switch c.Transport {
	case "grpc":
		opts := []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
		}
		if fastRetry {
			opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.2, MaxDelay: 50 * time.Millisecond},
				MinConnectTimeout: time.Second,
			}))
		}
		conn, err := grpc.NewClient(grpcAddr, opts...)
		if err != nil {
			return nil, fmt.Errorf("grpc client for %s: %w", grpcAddr, err)
		}
		cc, closeFn = conn, func() { conn.Close() }
	default:
		idle := 2*c.Concurrency + 2*c.BacklogConcurrency + 32
		tr := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        idle,
			MaxIdleConnsPerHost: idle,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		cc = prpc.NewClient("http://"+httpAddr, &http.Client{Transport: tr})
		closeFn = tr.CloseIdleConnections
	}
	return &clients{
		sw:    swarmingv1.NewExternalSchedulerClient(cc),
		admin: qschedulerv1.NewQSchedulerAdminClient(cc),
		view:  qschedulerv1.NewQSchedulerViewClient(cc),
		close: closeFn,
	}, nil
}

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
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

// dial returns clients of the configured transport. httpAddr and grpcAddr
// may each list several servers separated by commas (replicas serving the
// same pools): calls then go to them in turn. For gRPC, fastRetry shortens
// the reconnection backoff (startup measurements).
func dial(c *Config, httpAddr, grpcAddr string, fastRetry bool) (*clients, error) {
	addrs := strings.Split(httpAddr, ",")
	if c.Transport == "grpc" {
		addrs = strings.Split(grpcAddr, ",")
	}
	var rr roundRobin
	for _, a := range addrs {
		cc, closeFn, err := dialOne(c, a, fastRetry)
		if err != nil {
			rr.close()
			return nil, err
		}
		rr.conns, rr.closers = append(rr.conns, cc), append(rr.closers, closeFn)
	}
	var cc grpc.ClientConnInterface = &rr
	if len(rr.conns) == 1 {
		cc = rr.conns[0]
	}
	return &clients{
		sw:    swarmingv1.NewExternalSchedulerClient(cc),
		admin: qschedulerv1.NewQSchedulerAdminClient(cc),
		view:  qschedulerv1.NewQSchedulerViewClient(cc),
		close: rr.close,
	}, nil
}

// roundRobin sends each call to the next of its connections.
type roundRobin struct {
	conns   []grpc.ClientConnInterface
	closers []func()
	next    atomic.Uint64
}

func (r *roundRobin) pick() grpc.ClientConnInterface {
	return r.conns[(r.next.Add(1)-1)%uint64(len(r.conns))]
}

func (r *roundRobin) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return r.pick().Invoke(ctx, method, args, reply, opts...)
}

func (r *roundRobin) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return r.pick().NewStream(ctx, desc, method, opts...)
}

func (r *roundRobin) close() {
	for _, f := range r.closers {
		f()
	}
}

// dialOne returns a connection of the configured transport to one server.
func dialOne(c *Config, addr string, fastRetry bool) (grpc.ClientConnInterface, func(), error) {
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
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("grpc client for %s: %w", addr, err)
		}
		return conn, func() { conn.Close() }, nil
	}
	idle := 2*c.Concurrency + 2*c.BacklogConcurrency + 32
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return prpc.NewClient("http://"+addr, &http.Client{Transport: tr}), tr.CloseIdleConnections, nil
}

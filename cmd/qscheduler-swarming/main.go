// Command qscheduler-swarming is the external scheduler service for
// Swarming: native gRPC (ExternalScheduler, QSchedulerAdmin, QSchedulerView,
// health, reflection) on one port and HTTP (pRPC for every service,
// /healthz, /readyz) on another, over a durable store.
//
// With no flags it listens on 127.0.0.1:9090 (gRPC) and 127.0.0.1:8080
// (HTTP), keeps its state in an embedded database under ./qscheduler-data
// and writes events as JSON lines there. Every flag can also be set by an
// environment variable QSCHEDULER_<FLAG> (dashes become underscores).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/eventlog"
	"github.com/qscheduler-swarming/qscheduler-swarming/frontend"
	"github.com/qscheduler-swarming/qscheduler-swarming/metrics"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/embedded"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/storespec"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// version is stamped at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "qscheduler-swarming:", err)
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	grpcAddr, httpAddr  string
	store, eventLog     string
	maxQueue, maxBatch  int
	maxQueueBytes       int
	maxPollsInFlight    int
	maxNotifyQueue      int
	maxNotifyQueueBytes int
	maxClockSkew        time.Duration
	batchWindow         time.Duration
	shutdownGrace       time.Duration
	logFormat           string
	logLevel            string
	limits              frontend.Limits
	maxRequestBytes     int
	httpHosts           []string
	httpTimeouts        httpTimeouts
}

// httpTimeouts bound how long one HTTP connection may hold the server
// (http.Server's timeouts of the same names).
type httpTimeouts struct {
	readHeader time.Duration // reading a request's headers
	read       time.Duration // reading a whole request, body included
	write      time.Duration // from the end of the headers to the end of the answer
	idle       time.Duration // a kept-alive connection waiting for its next request
}

// defaultHTTPTimeouts fit Swarming's 20 s deadline: a call may take 20 s
// after its body is read in up to 30 s, within the 60 s of write.
var defaultHTTPTimeouts = httpTimeouts{readHeader: 10 * time.Second, read: 30 * time.Second, write: 60 * time.Second, idle: 120 * time.Second}

// defaultMaxRequestBytes bounds one request on both transports: a batched
// NotifyTasks of Swarming's 1,000 items takes a few MB at most.
const defaultMaxRequestBytes = 16 << 20

// defaultMaxQueueBytes bounds the bytes of one pool's queued polls: 10,000
// of Swarming's one-bot polls hold a few MB, and four of the largest polls
// --max-request-bytes allows fit.
const defaultMaxQueueBytes = 64 << 20

// defaultMaxPollsInFlight bounds the AssignTasks calls of the process: two
// full batches (--max-batch) of polls.
const defaultMaxPollsInFlight = 10000

// defaultMaxNotifyQueueBytes bounds the bytes of notifications the process
// holds: about 1,000 of Swarming's largest batched NotifyTasks calls (1,000
// items, about 270 KB) or 16 of the largest requests --max-request-bytes
// allows, and about 1 GB of heap (see docs/operations.md).
const defaultMaxNotifyQueueBytes = 256 << 20

// errDone: the command line asked for --help or --version, which is printed;
// the process exits 0 without serving.
var errDone = errors.New("done")

// envName is the environment variable that sets a flag.
func envName(flagName string) string {
	return "QSCHEDULER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseFlags(args []string, getenv func(string) string, stdout, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("qscheduler-swarming", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // --help prints usage below; an error says to use --help
	fs.StringVar(&c.grpcAddr, "grpc-addr", "127.0.0.1:9090", "native gRPC listen address")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address (pRPC, /healthz, /readyz)")
	fs.StringVar(&c.store, "store", "embedded:qscheduler-data", "state store: "+storespec.Kinds)
	fs.StringVar(&c.eventLog, "eventlog", "", "event log: jsonl:<path> | none (default jsonl:<dir>/events.jsonl with --store embedded:<dir>, none with --store memory)")
	d := frontend.DefaultLimits
	positive := map[string]*int{}
	limit := func(p *int, name string, def int, usage string) {
		fs.IntVar(p, name, def, usage)
		positive[name] = p
	}
	limit(&c.maxQueue, "max-queue", 10000, "AssignTasks calls queued per pool before more get ResourceExhausted")
	limit(&c.maxQueueBytes, "max-queue-bytes", defaultMaxQueueBytes, "bytes of AssignTasks calls queued per pool before more get ResourceExhausted")
	limit(&c.maxPollsInFlight, "max-polls-in-flight", defaultMaxPollsInFlight, "AssignTasks calls in flight in the process before more get ResourceExhausted before being read; pools that poll share it")
	limit(&c.maxNotifyQueue, "max-notify-queue", 100000, "NotifyTasks and admin calls queued per pool before more get Unavailable")
	limit(&c.maxNotifyQueueBytes, "max-notify-queue-bytes", defaultMaxNotifyQueueBytes, "bytes of NotifyTasks and admin calls queued or being applied in the process before more get Unavailable")
	limit(&c.maxBatch, "max-batch", 5000, "most requests in one batch")
	fs.DurationVar(&c.batchWindow, "batch-window", 0, "optional wait before a batch starts, to gather more requests")
	fs.DurationVar(&c.maxClockSkew, "max-clock-skew", frontend.DefaultMaxClockSkew, "how far ahead of this server's clock a request's time may be (InvalidArgument beyond)")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 25*time.Second, "how long SIGTERM waits for requests to drain")
	limit(&c.maxRequestBytes, "max-request-bytes", defaultMaxRequestBytes, "most bytes in one request, over gRPC and pRPC (InvalidArgument beyond)")
	limit(&c.limits.AssignBots, "max-assign-bots", d.AssignBots, "most idle bots in one AssignTasks call (InvalidArgument beyond)")
	limit(&c.limits.BotDimensions, "max-bot-dimensions", d.BotDimensions, "most dimensions of one idle bot (InvalidArgument beyond)")
	limit(&c.limits.NotifyItems, "max-notify-items", d.NotifyItems, "most items in one NotifyTasks call (InvalidArgument beyond)")
	limit(&c.limits.SliceDimensions, "max-slice-dimensions", d.SliceDimensions, "most dimensions of one task slice (a task error beyond)")
	limit(&c.limits.DimensionBytes, "max-dimension-bytes", d.DimensionBytes, "most bytes in one dimension of a bot (InvalidArgument beyond) or a task slice (a task error beyond)")
	limit(&c.limits.TaskTags, "max-task-tags", d.TaskTags, "most tags of one task (a task error beyond)")
	limit(&c.limits.TagBytes, "max-tag-bytes", d.TagBytes, "most bytes in one task tag (a task error beyond)")
	var hosts string
	fs.StringVar(&hosts, "http-host", "", "host names (name or name:port, comma-separated) the HTTP server answers pRPC to, or * for any (default localhost,127.0.0.1,[::1] when --http-addr is a loopback address; required otherwise)")
	dt := defaultHTTPTimeouts
	durations := map[string]*time.Duration{}
	timeout := func(p *time.Duration, name string, def time.Duration, usage string) {
		fs.DurationVar(p, name, def, usage)
		durations[name] = p
	}
	timeout(&c.httpTimeouts.readHeader, "http-read-header-timeout", dt.readHeader, "how long the HTTP server waits for a request's headers")
	timeout(&c.httpTimeouts.read, "http-read-timeout", dt.read, "how long the HTTP server waits for a whole request, body included")
	timeout(&c.httpTimeouts.write, "http-write-timeout", dt.write, "how long the HTTP server gives a request from the end of its headers to the end of its answer")
	timeout(&c.httpTimeouts.idle, "http-idle-timeout", dt.idle, "how long the HTTP server keeps an idle connection open")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text | json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug | info | warn | error")
	settable := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { settable[f.Name] = true })
	showVersion := fs.Bool("version", false, "print the version and the revision it was built from, then exit")
	// Environment variables give defaults; flags on the command line win.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if !settable[f.Name] {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %v", name, v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, fs, settable)
			return nil, errDone
		}
		return nil, fmt.Errorf("%v (run with --help to list the flags)", err)
	}
	if *showVersion {
		fmt.Fprintf(stdout, "qscheduler-swarming %s (revision %s, %s)\n", version, revision(), runtime.Version())
		return nil, errDone
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for name, p := range positive {
		if *p <= 0 {
			return nil, fmt.Errorf("--%s: %d is not a positive number", name, *p)
		}
	}
	for name, p := range durations {
		if *p <= 0 {
			return nil, fmt.Errorf("--%s: %v is not a positive duration", name, *p)
		}
	}
	var err error
	if c.httpHosts, err = parseHosts(hosts); err != nil {
		return nil, err
	}
	if c.eventLog == "" {
		c.eventLog = "none"
		if dir, ok := storespec.EmbeddedDir(c.store); ok {
			c.eventLog = "jsonl:" + filepath.Join(dir, "events.jsonl")
		}
	}
	return c, nil
}

// usage prints every flag with its environment variable.
func usage(w io.Writer, fs *flag.FlagSet, settable map[string]bool) {
	fmt.Fprint(w, `Usage: qscheduler-swarming [flags]

An external scheduler for Swarming: native gRPC and pRPC for Swarming's
ExternalScheduler and the QSchedulerAdmin and QSchedulerView APIs, with
/healthz and /readyz on the HTTP port.

Every flag but --version can also be set by the environment variable named
after it; a flag on the command line wins over its variable.

`)
	fs.VisitAll(func(f *flag.Flag) {
		kind, help := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if kind != "" {
			fmt.Fprintf(w, " %s", kind)
		}
		if settable[f.Name] {
			fmt.Fprintf(w, "   (env %s)", envName(f.Name))
		}
		fmt.Fprintf(w, "\n      %s", help)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func newLogger(c *config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", c.logFormat)
}

func openStore(spec string, log *slog.Logger) (nodestore.Store, error) {
	s, err := storespec.Open(context.Background(), spec, storespec.Options{CodeVersion: version, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	return s, nil
}

// sink is an event sink that can be flushed and closed.
type sink interface {
	state.EventSink
	Close() error
}

type noSink struct{}

func (noSink) Emit(string, []scheduler.Event) {}
func (noSink) Close() error                   { return nil }

func openEventLog(spec, instance string, log *slog.Logger) (sink, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "none":
		return noSink{}, nil
	case "jsonl":
		if arg == "" {
			return nil, fmt.Errorf("--eventlog: jsonl needs a path (jsonl:<path>)")
		}
		return eventlog.OpenJSONL(arg, instance, 0, log)
	}
	return nil, fmt.Errorf("--eventlog: %q is not jsonl:<path> or none (bigquery comes later)", spec)
}

func revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// run starts the service and blocks until ctx is done, then shuts down.
// listening, if set, is told the actual listen addresses (tests listen on
// port 0).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, listening func(grpcAddr, httpAddr string)) error {
	c, err := parseFlags(args, getenv, stdout, stderr)
	if errors.Is(err, errDone) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	started := time.Now()
	// Before the store is opened: opening creates pools.db.
	if dir, ok := storespec.EmbeddedDir(c.store); ok {
		if path, ok := strings.CutPrefix(c.eventLog, "jsonl:"); ok && path != "" {
			if msg, err := embedded.NewStoreWarning(dir, path); err != nil {
				log.Warn("could not compare the store with the event log", "err", err)
			} else if msg != "" {
				log.Warn("new store beside an existing event log: " + msg)
			}
		}
	}
	store, err := openStore(c.store, log)
	if err != nil {
		return err
	}
	defer store.Close()
	host, _ := os.Hostname()
	events, err := openEventLog(c.eventLog, fmt.Sprintf("%s-%d-%d", host, os.Getpid(), started.UnixNano()), log)
	if err != nil {
		return err
	}
	defer events.Close()
	return serve(ctx, c, log, store, events, started, listening)
}

// serve runs the service on store and events until ctx is done, then shuts
// down and closes both.
func serve(ctx context.Context, c *config, log *slog.Logger, store nodestore.Store, events sink, started time.Time, listening func(grpcAddr, httpAddr string)) error {
	exporter, err := metrics.New()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer exporter.Shutdown(context.Background())
	pipeline := state.New(store, events, state.Options{
		MaxQueue: c.maxQueue, MaxQueueBytes: int64(c.maxQueueBytes), MaxPollsInFlight: int64(c.maxPollsInFlight),
		MaxNotifyQueue: c.maxNotifyQueue, MaxNotifyQueueBytes: int64(c.maxNotifyQueueBytes),
		MaxBatch: c.maxBatch, Window: c.batchWindow, Logger: log,
	})
	grpcLis, err := net.Listen("tcp", c.grpcAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	httpLis, err := net.Listen("tcp", c.httpAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("--http-addr: %w", err)
	}
	hosts, err := newHostCheck(c.httpHosts, httpLis.Addr(), log)
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		return err
	}

	interceptors := []grpc.UnaryServerInterceptor{recoverer(log), logger(log)}
	gs := grpc.NewServer(
		grpc.ForceServerCodecV2(newServerCodec()),
		grpc.InTapHandle(pollDoor(pipeline)),
		grpc.ChainUnaryInterceptor(interceptors...),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(c.maxRequestBytes),
		grpc.MaxSendMsgSize(64<<20),
	)
	grpcReg := decodingRegistrar{s: gs, rejected: logRejected(log)}
	ps := prpc.NewServer(prpc.WithUnaryInterceptors(interceptors...), prpc.WithRejectionHook(logRejected(log)),
		prpc.WithAdmission(prpcPollDoor(pipeline)),
		prpc.WithMaxBodySize(int64(c.maxRequestBytes), "--max-request-bytes"), prpc.WithErrorLogger(log))
	sw := &frontend.Swarming{P: pipeline, MaxClockSkew: c.maxClockSkew, Limits: c.limits, Log: log}
	admin, view := &frontend.Admin{P: pipeline, Log: log}, &frontend.View{P: pipeline}
	if err := registerMetrics(exporter.Meter(), pipeline, sw); err != nil {
		grpcLis.Close()
		httpLis.Close()
		return fmt.Errorf("metrics: %w", err)
	}
	for _, r := range []grpc.ServiceRegistrar{grpcReg, ps} {
		swarmingv1.RegisterExternalSchedulerServer(r, sw)
		qschedulerv1.RegisterQSchedulerAdminServer(r, admin)
		qschedulerv1.RegisterQSchedulerViewServer(r, view)
	}
	hs := health.NewServer()
	services := []string{
		swarmingv1.ExternalScheduler_ServiceDesc.ServiceName,
		qschedulerv1.QSchedulerAdmin_ServiceDesc.ServiceName,
		qschedulerv1.QSchedulerView_ServiceDesc.ServiceName,
	}
	setHealth := func(st healthpb.HealthCheckResponse_ServingStatus) {
		hs.SetServingStatus("", st)
		for _, s := range services {
			hs.SetServingStatus(s, st)
		}
	}
	setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(grpcReg, hs)
	reflection.Register(gs)

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/prpc/", ps)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"status": "ok", "version": version, "revision": revision(),
			"uptime_seconds": int64(time.Since(started).Seconds()), "started": started.UTC().Format(time.RFC3339),
		})
	})
	mux.HandleFunc("/readyz", readyz(&ready, store, pipeline))
	mux.Handle("/metrics", exporter.Handler())
	to := c.httpTimeouts
	hsrv := &http.Server{
		Handler:           hosts.wrap(mux),
		ReadHeaderTimeout: to.readHeader,
		ReadTimeout:       to.read,
		WriteTimeout:      to.write,
		IdleTimeout:       to.idle,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(grpcLis) }()
	go func() { errc <- hsrv.Serve(httpLis) }()
	log.Info("serving", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(), "http_host", hosts.shown, "store", c.store, "eventlog", c.eventLog, "version", version)
	if listening != nil {
		listening(grpcLis.Addr().String(), httpLis.Addr().String())
	}

	// Load pools while already answering /healthz (alive) and /readyz (503).
	if err := pipeline.Load(ctx); err != nil {
		gs.Stop()
		hsrv.Close()
		return fmt.Errorf("loading state: %w", err)
	}
	// gRPC health follows readiness and the store's health: NOT_SERVING
	// while the store takes no writes, SERVING again once a write check
	// succeeds, without any request.
	var healthMu sync.Mutex
	updateHealth := func() {
		healthMu.Lock()
		defer healthMu.Unlock()
		st := healthpb.HealthCheckResponse_SERVING
		if !ready.Load() || !pipeline.StoreHealth().Healthy {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		setHealth(st)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-pipeline.StoreHealthChanged():
				updateHealth()
			}
		}
	}()
	ready.Store(true)
	updateHealth()
	log.Info("ready", "pools", len(pipeline.Pools()), "load_seconds", time.Since(started).Seconds())

	select {
	case <-ctx.Done():
	case err := <-errc:
		log.Error("server failed", "err", err)
	}
	// Shutdown: not serving, stop accepting, drain the batchers, flush.
	log.Info("shutting down")
	ready.Store(false)
	updateHealth()
	stopWatch()
	<-watchDone
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownGrace)
	defer cancel()
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	if err := hsrv.Shutdown(sctx); err != nil {
		// The grace is over: close the connections still open.
		hsrv.Close()
	}
	select {
	case <-done:
	case <-sctx.Done():
		gs.Stop()
	}
	pipeline.Close()
	if sr, ok := store.(nodestore.StatsReporter); ok {
		st := sr.Stats()
		log.Info("store stats", "commits", st.Commits, "log_bytes", st.LogBytes, "snapshots", st.Snapshots,
			"snapshot_bytes", st.SnapshotBytes, "collected_logs", st.CollectedLogs, "collected_shards", st.CollectedShards)
	}
	if err := events.Close(); err != nil {
		log.Error("closing the event log", "err", err)
	}
	if err := store.Close(); err != nil && !errors.Is(err, nodestore.ErrClosed) {
		log.Error("closing the store", "err", err)
	}
	log.Info("stopped")
	return nil
}

// readyz answers 200 once every pool is loaded, while the store answers,
// takes writes and no pool is down; otherwise 503 with every reason.
func readyz(ready *atomic.Bool, store nodestore.Store, pipeline *state.Pipeline) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "loading pools", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := store.ListPools(ctx); err != nil {
			http.Error(w, "store unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		var b strings.Builder
		if err := pipeline.StoreHealth().Err(); err != nil {
			fmt.Fprintln(&b, err)
		}
		for _, o := range pipeline.Outages() {
			fmt.Fprintf(&b, "pool %q down since %s (%d restores tried, last error: %v): %v\n",
				o.Pool, o.Since.UTC().Format(time.RFC3339), o.Attempts, o.Last, o.Cause)
		}
		if b.Len() > 0 {
			http.Error(w, strings.TrimSuffix(b.String(), "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	}
}

// assignMethod is the method the door of polls admits.
const assignMethod = swarmingv1.ExternalScheduler_AssignTasks_FullMethodName

// pollDoor is the gRPC tap handle that admits AssignTasks calls through the
// pipeline's door before their message is read, and releases their place
// when the stream ends. A refused call gets ResourceExhausted.
func pollDoor(p *state.Pipeline) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if info.FullMethodName != assignMethod {
			return ctx, nil
		}
		release, err := p.AdmitPoll()
		if err != nil {
			return nil, status.Error(codes.ResourceExhausted, err.Error())
		}
		context.AfterFunc(ctx, release)
		return ctx, nil
	}
}

// prpcPollDoor is pollDoor for pRPC: it runs before the body is read.
func prpcPollDoor(p *state.Pipeline) func(ctx context.Context, fullMethod string) (func(), error) {
	return func(ctx context.Context, fullMethod string) (func(), error) {
		if fullMethod != assignMethod {
			return nil, nil
		}
		release, err := p.AdmitPoll()
		if err != nil {
			return nil, status.Error(codes.ResourceExhausted, err.Error())
		}
		return release, nil
	}
}

// recoverer turns a handler panic into Internal instead of a crash.
func recoverer(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("handler panicked", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return handler(ctx, req)
	}
}

// logger logs failed calls (at Warn for server-side codes) and all calls at
// Debug; never one line per task at Info.
func logger(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		t0 := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, log, info.FullMethod, err, "duration", time.Since(t0))
		return resp, err
	}
}

// logRejected logs, as logger does, the calls answered before the
// interceptors run: requests over --max-request-bytes or that cannot be
// decoded, and over pRPC those with bad protocol headers.
func logRejected(log *slog.Logger) func(ctx context.Context, fullMethod string, err error) {
	return func(ctx context.Context, fullMethod string, err error) {
		logCall(ctx, log, fullMethod, err)
	}
}

func logCall(ctx context.Context, log *slog.Logger, method string, err error, attrs ...any) {
	code := status.Code(err)
	level := slog.LevelDebug
	switch code {
	case codes.Internal, codes.DataLoss, codes.Unknown:
		// Unavailable is not here: store failures are logged once per
		// batch by the pipeline, and "still loading" answers would flood
		// the log at every start.
		level = slog.LevelWarn
	}
	args := append([]any{"method", method, "code", code.String()}, attrs...)
	log.Log(ctx, level, "rpc", append(args, "transport", transport(ctx), "err", err)...)
}

func transport(ctx context.Context) string {
	if prpc.FromPRPC(ctx) {
		return "prpc"
	}
	return "grpc"
}

// Package dsproxy is a Cloud Datastore for fault tests: a gRPC server of the
// service google.datastore.v1.Datastore that forwards every call to a real
// one (the Firestore emulator of internal/dsemu) and, for the calls a test
// chooses, fails, delays or loses them the way a network and a database do.
// The semantics of what it forwards are the emulator's own; the proxy adds
// only the faults.
//
// Point the real client library at it with DATASTORE_EMULATOR_HOST set to
// Addr. A fault applies to the calls a Rule matches: by method, by request
// (Match) and for a number of calls (Times). What the proxy did with every
// call is kept in Calls, for tests that count attempts or measure the
// backoff between them.
package dsproxy

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Method names a method of the Datastore service.
type Method string

// The methods of google.datastore.v1.Datastore.
const (
	Lookup              Method = "Lookup"
	RunQuery            Method = "RunQuery"
	RunAggregationQuery Method = "RunAggregationQuery"
	BeginTransaction    Method = "BeginTransaction"
	Commit              Method = "Commit"
	Rollback            Method = "Rollback"
	AllocateIds         Method = "AllocateIds"
	ReserveIds          Method = "ReserveIds"
)

// Action is what the proxy does with a call a fault hits.
type Action int

// Actions of a Fault.
const (
	// Fail answers Fault.Code without forwarding: the call has no effect.
	Fail Action = iota + 1
	// Lose forwards the call, then answers Fault.Code instead of the
	// reply: the call took effect and its caller cannot know.
	Lose
	// Hang answers nothing, without forwarding, until the caller gives up
	// (its deadline passes or it cancels): a call lost on the way.
	Hang
	// LandAndHang forwards the call, then answers nothing until the caller
	// gives up: the call took effect and its answer never came.
	LandAndHang
)

func (a Action) String() string {
	switch a {
	case 0:
		return "forward"
	case Fail:
		return "fail"
	case Lose:
		return "lose"
	case Hang:
		return "hang"
	case LandAndHang:
		return "land-and-hang"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Fault is what happens to one call.
type Fault struct {
	Action Action
	// Code is the answer of Fail and Lose.
	Code codes.Code
	// Gate, if set, holds the call before it answers (after forwarding, if
	// the action forwards) until the gate opens or the caller gives up.
	Gate *Gate
}

// Rule chooses the calls a fault hits.
type Rule struct {
	// Method is the method of the calls; "" is every method.
	Method Method
	// Match, if set, must report true for the request.
	Match func(req proto.Message) bool
	// Times is how many calls the rule hits; 0 or less: every matching
	// call until Clear.
	Times int
	Fault Fault
}

// Call is what the proxy did with one call.
type Call struct {
	Method Method
	Req    proto.Message
	At     time.Time // when the call arrived
	// Action is the fault's action; 0 when the call was forwarded
	// untouched.
	Action Action
	// Code is the answer's code. A call that hangs gets its code (the
	// caller's deadline or cancellation, as the proxy sees it) when the
	// proxy sees the caller give up, possibly after the caller has its
	// error.
	Code codes.Code
	// Answered: the proxy has answered the call (Code and Done are set).
	Answered bool
	Done     time.Time // when the proxy answered
}

// Gate holds the calls whose fault names it until it is opened.
type Gate struct {
	arrived chan struct{}
	open    chan struct{}
	once    sync.Once
}

// NewGate returns a closed gate. Up to 64 calls may arrive before a test
// reads Arrived.
func NewGate() *Gate {
	return &Gate{arrived: make(chan struct{}, 64), open: make(chan struct{})}
}

// Arrived receives a value for each call that comes to wait at the gate.
func (g *Gate) Arrived() <-chan struct{} { return g.arrived }

// Open lets every held call, and every later one, go on. Opening twice is
// allowed.
func (g *Gate) Open() { g.once.Do(func() { close(g.open) }) }

// wait holds the call until the gate opens or ctx ends.
func (g *Gate) wait(ctx context.Context) error {
	g.arrived <- struct{}{}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// Proxy is a running proxy. It is safe for concurrent use.
type Proxy struct {
	pb.UnimplementedDatastoreServer

	lis net.Listener
	srv *grpc.Server

	mu       sync.Mutex
	conn     *grpc.ClientConn
	upstream pb.DatastoreClient
	rules    []*Rule
	calls    []Call
}

// Start serves a proxy of the Datastore service at upstream (host:port,
// plain gRPC as the emulator speaks) on 127.0.0.1 and a free port.
func Start(upstream string) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("dsproxy: %w", err)
	}
	p := &Proxy{lis: lis, srv: grpc.NewServer()}
	if err := p.SetUpstream(upstream); err != nil {
		lis.Close()
		return nil, err
	}
	pb.RegisterDatastoreServer(p.srv, p)
	go func() { _ = p.srv.Serve(lis) }()
	return p, nil
}

// Addr is the proxy's address, the value for DATASTORE_EMULATOR_HOST.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// SetUpstream makes later calls go to upstream (host:port). Calls in flight
// finish on the connection they started on, which is then closed.
func (p *Proxy) SetUpstream(upstream string) error {
	// No retries and no waiting for a connection: an upstream that is down
	// answers Unavailable at once, and the client decides what to do.
	conn, err := grpc.NewClient("passthrough:///"+upstream, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry())
	if err != nil {
		return fmt.Errorf("dsproxy: upstream %s: %w", upstream, err)
	}
	p.mu.Lock()
	old := p.conn
	p.conn, p.upstream = conn, pb.NewDatastoreClient(conn)
	p.mu.Unlock()
	if old != nil {
		go old.Close() // waits for nothing; in-flight calls end with it
	}
	return nil
}

// Inject adds rules. A call takes the fault of the first rule, in the
// order added, that matches it and has calls left.
func (p *Proxy) Inject(rules ...Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range rules {
		p.rules = append(p.rules, &r)
	}
}

// Clear removes every rule: later calls are forwarded untouched.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// Pending reports how many calls the rules with a limited Times still
// have to hit.
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.rules {
		if r.Times > 0 {
			n += r.Times
		}
	}
	return n
}

// Calls returns what the proxy did with every call so far, of the given
// methods (every method when none is given), in arrival order.
func (p *Proxy) Calls(methods ...Method) []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Call
	for _, c := range p.calls {
		if len(methods) == 0 || slices.Contains(methods, c.Method) {
			out = append(out, c)
		}
	}
	return out
}

// Close stops the server, ending calls in flight, and closes the
// connection upstream.
func (p *Proxy) Close() {
	p.srv.Stop()
	p.mu.Lock()
	conn := p.conn
	p.mu.Unlock()
	conn.Close()
}

// take returns the fault of the call, and the upstream to forward it to,
// and records the call.
func (p *Proxy) take(m Method, req proto.Message) (Fault, pb.DatastoreClient, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var f Fault
	for i, r := range p.rules {
		if r.Method != "" && r.Method != m || r.Match != nil && !r.Match(req) {
			continue
		}
		f = r.Fault
		if r.Times > 0 {
			r.Times--
			if r.Times == 0 {
				p.rules = append(p.rules[:i:i], p.rules[i+1:]...)
			}
		}
		break
	}
	p.calls = append(p.calls, Call{Method: m, Req: req, At: time.Now(), Action: f.Action})
	return f, p.upstream, len(p.calls) - 1
}

func (p *Proxy) answered(i int, err error) {
	p.mu.Lock()
	p.calls[i].Code, p.calls[i].Answered, p.calls[i].Done = status.Code(err), true, time.Now()
	p.mu.Unlock()
}

// forwardHeaders are the prefixes of the request metadata passed upstream:
// the routing headers the client library sets.
var forwardHeaders = []string{"x-goog-", "google-cloud-"}

// call applies the call's fault around forwarding it with fwd.
func call[Req proto.Message, Resp any](ctx context.Context, p *Proxy, m Method, req Req, fwd func(pb.DatastoreClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (resp Resp, err error) {
	f, up, i := p.take(m, req)
	defer func() { p.answered(i, err) }()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		out := metadata.MD{}
		for k, v := range md {
			for _, prefix := range forwardHeaders {
				if strings.HasPrefix(k, prefix) {
					out[k] = v
				}
			}
		}
		ctx = metadata.NewOutgoingContext(ctx, out)
	}
	var zero Resp
	switch f.Action {
	case 0:
		resp, err = fwd(up, ctx, req)
	case Fail:
		resp, err = zero, status.Errorf(f.Code, "dsproxy: injected %v on %s", f.Code, m)
	case Lose:
		if _, ferr := fwd(up, ctx, req); ferr != nil {
			return zero, ferr
		}
		resp, err = zero, status.Errorf(f.Code, "dsproxy: injected %v on %s after it took effect", f.Code, m)
	case Hang, LandAndHang:
		if f.Action == LandAndHang {
			if _, ferr := fwd(up, ctx, req); ferr != nil {
				return zero, ferr
			}
		}
		<-ctx.Done()
		return zero, status.FromContextError(ctx.Err()).Err()
	default:
		return zero, status.Errorf(codes.Internal, "dsproxy: unknown action %v", f.Action)
	}
	if f.Gate != nil {
		if gerr := f.Gate.wait(ctx); gerr != nil {
			return zero, gerr
		}
	}
	return resp, err
}

// The methods of pb.DatastoreServer.

func (p *Proxy) Lookup(ctx context.Context, req *pb.LookupRequest) (*pb.LookupResponse, error) {
	return call(ctx, p, Lookup, req, pb.DatastoreClient.Lookup)
}

func (p *Proxy) RunQuery(ctx context.Context, req *pb.RunQueryRequest) (*pb.RunQueryResponse, error) {
	return call(ctx, p, RunQuery, req, pb.DatastoreClient.RunQuery)
}

func (p *Proxy) RunAggregationQuery(ctx context.Context, req *pb.RunAggregationQueryRequest) (*pb.RunAggregationQueryResponse, error) {
	return call(ctx, p, RunAggregationQuery, req, pb.DatastoreClient.RunAggregationQuery)
}

func (p *Proxy) BeginTransaction(ctx context.Context, req *pb.BeginTransactionRequest) (*pb.BeginTransactionResponse, error) {
	return call(ctx, p, BeginTransaction, req, pb.DatastoreClient.BeginTransaction)
}

func (p *Proxy) Commit(ctx context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	return call(ctx, p, Commit, req, pb.DatastoreClient.Commit)
}

func (p *Proxy) Rollback(ctx context.Context, req *pb.RollbackRequest) (*pb.RollbackResponse, error) {
	return call(ctx, p, Rollback, req, pb.DatastoreClient.Rollback)
}

func (p *Proxy) AllocateIds(ctx context.Context, req *pb.AllocateIdsRequest) (*pb.AllocateIdsResponse, error) {
	return call(ctx, p, AllocateIds, req, pb.DatastoreClient.AllocateIds)
}

func (p *Proxy) ReserveIds(ctx context.Context, req *pb.ReserveIdsRequest) (*pb.ReserveIdsResponse, error) {
	return call(ctx, p, ReserveIds, req, pb.DatastoreClient.ReserveIds)
}

// Writes matches a Commit that writes (inserts, updates or upserts) an
// entity of one of kinds, the kind of its key's last element, or of any
// kind when none is given.
func Writes(kinds ...string) func(proto.Message) bool {
	return mutates(kinds, func(mu *pb.Mutation) *pb.Key {
		switch op := mu.Operation.(type) {
		case *pb.Mutation_Insert:
			return op.Insert.GetKey()
		case *pb.Mutation_Update:
			return op.Update.GetKey()
		case *pb.Mutation_Upsert:
			return op.Upsert.GetKey()
		}
		return nil
	})
}

// Deletes matches a Commit that deletes an entity of one of kinds, or of
// any kind when none is given.
func Deletes(kinds ...string) func(proto.Message) bool {
	return mutates(kinds, func(mu *pb.Mutation) *pb.Key { return mu.GetDelete() })
}

// mutates matches a Commit with a mutation of an entity of one of kinds
// (any when none is given), whose key key returns (nil for other
// mutations).
func mutates(kinds []string, key func(*pb.Mutation) *pb.Key) func(proto.Message) bool {
	return func(m proto.Message) bool {
		req, ok := m.(*pb.CommitRequest)
		if !ok {
			return false
		}
		for _, mu := range req.Mutations {
			path := key(mu).GetPath()
			if len(path) > 0 && (len(kinds) == 0 || slices.Contains(kinds, path[len(path)-1].Kind)) {
				return true
			}
		}
		return false
	}
}

// Transactional matches a Commit of a transaction.
func Transactional(m proto.Message) bool {
	req, ok := m.(*pb.CommitRequest)
	return ok && req.Mode == pb.CommitRequest_TRANSACTIONAL
}

// Both matches what every one of ms matches.
func Both(ms ...func(proto.Message) bool) func(proto.Message) bool {
	return func(m proto.Message) bool {
		for _, f := range ms {
			if !f(m) {
				return false
			}
		}
		return true
	}
}

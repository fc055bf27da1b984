package dsproxy

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsemu"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { os.Exit(dsemu.Main(m)) }

// client is a plain gRPC client of the proxy, in a project of its own, so
// that every answer the proxy gives reaches the test as it is (the client
// library would retry some).
type client struct {
	t       *testing.T
	c       pb.DatastoreClient
	project string
}

func start(t *testing.T, upstream string) (*Proxy, *client) {
	t.Helper()
	p, err := Start(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	conn, err := grpc.NewClient("passthrough:///"+p.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return p, &client{t: t, c: pb.NewDatastoreClient(conn), project: dsemu.ProjectID()}
}

func (c *client) key(kind, name string) *pb.Key {
	return &pb.Key{PartitionId: &pb.PartitionId{ProjectId: c.project}, Path: []*pb.Key_PathElement{{Kind: kind, IdType: &pb.Key_PathElement_Name{Name: name}}}}
}

// put writes an entity of kind and name outside any transaction, within
// timeout, and returns the answer's code.
func (c *client) put(kind, name string, timeout time.Duration) codes.Code {
	ctx, cancel := context.WithTimeout(c.t.Context(), timeout)
	defer cancel()
	_, err := c.c.Commit(ctx, &pb.CommitRequest{ProjectId: c.project, Mode: pb.CommitRequest_NON_TRANSACTIONAL,
		Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: c.key(kind, name)}}}}})
	return status.Code(err)
}

// exists looks the entity up, with no fault in the way.
func (c *client) exists(kind, name string) bool {
	c.t.Helper()
	resp, err := c.c.Lookup(c.t.Context(), &pb.LookupRequest{ProjectId: c.project, Keys: []*pb.Key{c.key(kind, name)}})
	if err != nil {
		c.t.Fatalf("looking up %s/%s: %v", kind, name, err)
	}
	return len(resp.Found) == 1
}

// TestFaults: each action does to the upstream and to the caller what it
// says, on the calls its rule matches and no others.
func TestFaults(t *testing.T) {
	p, c := start(t, dsemu.Shared(t).Host())
	const long = time.Minute
	if got := c.put("A", "plain", long); got != codes.OK || !c.exists("A", "plain") {
		t.Fatalf("a put without faults: %v", got)
	}
	for _, tc := range []struct {
		name    string
		fault   Fault
		timeout time.Duration
		want    codes.Code
		lands   bool
	}{
		{"fail", Fault{Action: Fail, Code: codes.Aborted}, long, codes.Aborted, false},
		{"lose", Fault{Action: Lose, Code: codes.Unavailable}, long, codes.Unavailable, true},
		{"hang", Fault{Action: Hang}, 100 * time.Millisecond, codes.DeadlineExceeded, false},
		{"land-and-hang", Fault{Action: LandAndHang}, 100 * time.Millisecond, codes.DeadlineExceeded, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Inject(Rule{Method: Commit, Match: Writes("B"), Times: 1, Fault: tc.fault})
			// Another kind passes untouched and leaves the rule in place.
			if got := c.put("A", tc.name, long); got != codes.OK {
				t.Fatalf("a put the rule does not match: %v", got)
			}
			if p.Pending() != 1 {
				t.Fatalf("%d calls pending, want the rule's one", p.Pending())
			}
			if got := c.put("B", tc.name, tc.timeout); got != tc.want {
				t.Errorf("put: %v, want %v", got, tc.want)
			}
			if got := c.exists("B", tc.name); got != tc.lands {
				t.Errorf("the entity exists: %v, want %v", got, tc.lands)
			}
			calls := p.Calls(Commit)
			last := calls[len(calls)-1]
			if last.Action != tc.fault.Action {
				t.Errorf("the call is recorded as %v, want %v", last.Action, tc.fault.Action)
			}
			if (tc.fault.Action == Fail || tc.fault.Action == Lose) && last.Code != tc.want {
				t.Errorf("the call is recorded answering %v, want %v", last.Code, tc.want)
			}
			// The rule is used up: the same put now goes through.
			if got := c.put("B", tc.name+"-again", long); got != codes.OK || !c.exists("B", tc.name+"-again") {
				t.Errorf("the put after the fault: %v", got)
			}
		})
	}
	if n := len(p.Calls(Lookup)); n == 0 || len(p.Calls()) <= n {
		t.Errorf("Calls records %d lookups of %d calls", n, len(p.Calls()))
	}
}

// TestGate: a call that lands and waits at a gate has taken effect before
// its answer comes; the answer comes once the gate opens.
func TestGate(t *testing.T) {
	p, c := start(t, dsemu.Shared(t).Host())
	g := NewGate()
	p.Inject(Rule{Method: Commit, Times: 1, Fault: Fault{Action: Lose, Code: codes.Unavailable, Gate: g}})
	answered := make(chan codes.Code, 1)
	go func() { answered <- c.put("A", "held", time.Minute) }()
	<-g.Arrived()
	if !c.exists("A", "held") {
		t.Error("the held put has not landed")
	}
	select {
	case got := <-answered:
		t.Fatalf("the put was answered (%v) before the gate opened", got)
	default:
	}
	g.Open()
	if got := <-answered; got != codes.Unavailable {
		t.Errorf("the put answered %v, want Unavailable", got)
	}
}

// TestSetUpstream: while the upstream is down every call answers
// Unavailable at once; once the proxy points at a live one, calls go
// through.
func TestSetUpstream(t *testing.T) {
	emu := dsemu.Shared(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	p, c := start(t, dead)
	if got := c.put("A", "down", time.Minute); got != codes.Unavailable {
		t.Errorf("a put to %s, where nothing listens: %v, want Unavailable", dead, got)
	}
	if err := p.SetUpstream(emu.Host()); err != nil {
		t.Fatal(err)
	}
	if got := c.put("A", "up", time.Minute); got != codes.OK || !c.exists("A", "up") {
		t.Errorf("a put once the upstream is up: %v", got)
	}
}

package main

// The same codes on both transports for requests the handlers never see:
// bytes that do not decode (invalid UTF-8 in a string field included) are
// InvalidArgument over native gRPC as over pRPC, and every such call is
// logged, as is a request over --max-request-bytes (ResourceExhausted from
// the gRPC library).

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// rawCodec sends the bytes it is given as the request and returns the
// answer's bytes undecoded.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestMalformedRequestsOverGRPC sends raw bytes over a real gRPC connection.
func TestMalformedRequestsOverGRPC(t *testing.T) {
	ts := startServer(t, "--max-request-bytes=4096")
	valid, err := proto.Marshal(&swarmingv1.GetCallbacksRequest{SchedulerId: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	big, err := proto.Marshal(&swarmingv1.AssignTasksRequest{SchedulerId: "p", IdleBots: []*swarmingv1.IdleBot{{BotId: "b", Dimensions: dims(400)}}})
	if err != nil {
		t.Fatal(err)
	}
	// A dimension deep in a NotifyTasks request, made invalid UTF-8.
	nested, err := proto.Marshal(&swarmingv1.NotifyTasksRequest{SchedulerId: "p", Notifications: []*swarmingv1.NotifyTasksItem{
		{Time: at(0), Task: pendingTask("t", "", []string{"pool:lab", "MARK"})}}})
	if err != nil {
		t.Fatal(err)
	}
	nested = bytes.Replace(nested, []byte("MARK"), []byte("\xfeARK"), 1)
	for _, tc := range []struct {
		name, method string
		body         []byte
		code         codes.Code
		msg          string
	}{
		{"valid", swarmingv1.ExternalScheduler_GetCallbacks_FullMethodName, valid, codes.OK, ""},
		{"garbage", swarmingv1.ExternalScheduler_AssignTasks_FullMethodName, []byte("\xff\xff\xff\xff"), codes.InvalidArgument, "could not decode the request"},
		{"truncated", swarmingv1.ExternalScheduler_AssignTasks_FullMethodName, []byte("\x0a\x05ab"), codes.InvalidArgument, "could not decode the request"},
		// scheduler_id (field 1) = "\xff".
		{"invalid UTF-8", swarmingv1.ExternalScheduler_AssignTasks_FullMethodName, []byte("\x0a\x01\xff"), codes.InvalidArgument, "invalid UTF-8"},
		{"nested invalid UTF-8", swarmingv1.ExternalScheduler_NotifyTasks_FullMethodName, nested, codes.InvalidArgument, "invalid UTF-8"},
		{"admin", "/qscheduler.v1.QSchedulerAdmin/CreateSchedulerPool", []byte("\x0a\x01\xff"), codes.InvalidArgument, "invalid UTF-8"},
		// The library answers before the message is read, and before any
		// handler could choose another code.
		{"over --max-request-bytes", swarmingv1.ExternalScheduler_AssignTasks_FullMethodName, big, codes.ResourceExhausted, "grpc: received message larger than max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out []byte
			err := ts.conn.Invoke(context.Background(), tc.method, tc.body, &out, grpc.ForceCodecV2(rawCodec{}))
			wantCode(t, err, tc.code, tc.msg)
			if tc.code == codes.OK {
				return
			}
			want := "msg=rpc method=" + tc.method + " code=" + tc.code.String() + " transport=grpc"
			testutil.WaitFor(t, "the call's log line "+want, func() bool { return strings.Contains(ts.log.String(), want) })
		})
	}
	// The same bytes over pRPC.
	for _, body := range [][]byte{[]byte("\xff\xff\xff\xff"), []byte("\x0a\x01\xff"), nested} {
		resp, err := http.Post("http://"+ts.httpAddr+"/prpc/swarming.v1.ExternalScheduler/NotifyTasks", prpc.ContentTypeBinary, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(prpc.HeaderGRPCCode) != "3" {
			t.Errorf("pRPC %q: HTTP %d, code %s; want 400 and 3", body, resp.StatusCode, resp.Header.Get(prpc.HeaderGRPCCode))
		}
	}
	want := "msg=rpc method=/swarming.v1.ExternalScheduler/NotifyTasks code=InvalidArgument transport=prpc"
	testutil.WaitFor(t, "the pRPC calls' log lines", func() bool { return strings.Count(ts.log.String(), want) == 3 })

	// The health service decodes its requests the same way.
	var out []byte
	err = ts.conn.Invoke(context.Background(), "/grpc.health.v1.Health/Check", []byte("\xff"), &out, grpc.ForceCodecV2(rawCodec{}))
	wantCode(t, err, codes.InvalidArgument, "could not decode")
}

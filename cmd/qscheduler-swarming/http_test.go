package main

// The HTTP server against a browser and against slow clients: the Host rule
// (DNS rebinding), no CORS permission, no simple cross-origin requests, and
// timeouts that close slow connections and keep them from holding shutdown.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"google.golang.org/protobuf/proto"
)

const callbacksPath = "/prpc/swarming.v1.ExternalScheduler/GetCallbacks"

// hostCall makes a valid pRPC call with the given Host and returns the
// HTTP status and the pRPC code.
func hostCall(t *testing.T, ts *testServer, path, host string) (int, string) {
	t.Helper()
	method := http.MethodPost
	if !strings.HasPrefix(path, "/prpc/") {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, "http://"+ts.httpAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", prpc.ContentTypeBinary)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusForbidden && !strings.Contains(string(body), "--http-host") {
		t.Errorf("Host %q: 403 without saying why: %q", host, body)
	}
	return resp.StatusCode, resp.Header.Get(prpc.HeaderGRPCCode)
}

// TestHostCheck: on loopback the service answers pRPC for the loopback names
// on any port and refuses every other Host (a page of attacker.example whose
// name resolves to 127.0.0.1) with 403 and PermissionDenied; the probes'
// paths answer any Host. --http-host replaces the names; * accepts any.
func TestHostCheck(t *testing.T) {
	ts := startServer(t, "--log-level=info")
	_, port, _ := net.SplitHostPort(ts.httpAddr)
	for _, host := range []string{ts.httpAddr, "127.0.0.1", "localhost:" + port, "localhost", "LocalHost.:8080", "[::1]:" + port, "[::1]"} {
		if code, grpcCode := hostCall(t, ts, callbacksPath, host); code != 200 || grpcCode != "0" {
			t.Errorf("Host %q: HTTP %d, code %s; want 200", host, code, grpcCode)
		}
	}
	for _, host := range []string{"attacker.example:" + port, "attacker.example", "127.0.0.1.attacker.example", "localhost.attacker.example:" + port, "127.0.0.2", "localhost:port"} {
		if code, grpcCode := hostCall(t, ts, callbacksPath, host); code != http.StatusForbidden || grpcCode != "7" {
			t.Errorf("Host %q: HTTP %d, code %s; want 403 and 7 (PermissionDenied)", host, code, grpcCode)
		}
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if code, _ := hostCall(t, ts, path, host); code != 200 {
				t.Errorf("Host %q: %s answered %d, want 200", host, path, code)
			}
		}
	}
	// An HTTP/1.0 request may come without a Host.
	conn, err := net.Dial("tcp", ts.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.0\r\nContent-Type: %s\r\nContent-Length: 0\r\n\r\n", callbacksPath, prpc.ContentTypeBinary)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("no Host: HTTP %d, want 403", resp.StatusCode)
	}
	// One warning a minute, counting the refusals.
	if n := strings.Count(ts.log.String(), "refused HTTP requests for a Host"); n != 1 {
		t.Errorf("%d warnings about refused Hosts, want 1", n)
	}

	named := startServer(t, "--http-host=qscheduler.example.com, other.example:8443")
	for host, want := range map[string]int{
		"qscheduler.example.com": 200, "qscheduler.example.com:443": 200, "other.example:8443": 200,
		"other.example": 403, "other.example:9999": 403, named.httpAddr: 403, "localhost": 403,
	} {
		if code, _ := hostCall(t, named, callbacksPath, host); code != want {
			t.Errorf("--http-host=qscheduler.example.com,other.example:8443: Host %q answered %d, want %d", host, code, want)
		}
	}
	anyHost := startServer(t, "--http-host=*")
	if code, _ := hostCall(t, anyHost, callbacksPath, "attacker.example"); code != 200 {
		t.Errorf("--http-host=*: Host attacker.example answered %d, want 200", code)
	}
}

// TestHostRuleOffLoopback: a listener that is not on loopback needs
// --http-host; the service refuses to start without it.
func TestHostRuleOffLoopback(t *testing.T) {
	err := run(context.Background(), []string{"--grpc-addr=127.0.0.1:0", "--http-addr=0.0.0.0:0", "--store=memory", "--eventlog=none"}, noEnv, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "--http-host") {
		t.Errorf("--http-addr=0.0.0.0:0 without --http-host: %v, want an error naming --http-host", err)
	}
	if _, err := newHostCheck(nil, &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 8080}, nil); err == nil {
		t.Error("10.1.2.3:8080 without --http-host accepted")
	}
	if _, err := newHostCheck([]string{"qscheduler.example.com"}, &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 8080}, nil); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"*,localhost", "http://x", "x/y", "x:port", "a b"} {
		if _, err := parseHosts(bad); err == nil {
			t.Errorf("--http-host=%s accepted", bad)
		}
	}
}

// TestNoCORS: a page of another origin gets no CORS permission (no
// Access-Control-Allow-* header, the preflight refused), and the requests a
// browser sends without a preflight (no Content-Type, text/plain, form
// encodings) are refused before anything is decoded.
func TestNoCORS(t *testing.T) {
	ts := startServer(t)
	const origin = "http://attacker.example"
	url := "http://" + ts.httpAddr + "/prpc/qscheduler.v1.QSchedulerAdmin/CreateSchedulerPool"
	noCORS := func(what string, resp *http.Response) {
		t.Helper()
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s: header %s: %q", what, k, resp.Header.Get(k))
			}
		}
	}
	do := func(req *http.Request) *http.Response {
		t.Helper()
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	pre, _ := http.NewRequest(http.MethodOptions, url, nil)
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "content-type")
	resp := do(pre)
	noCORS("preflight", resp)
	if resp.StatusCode/100 == 2 {
		t.Errorf("preflight answered %d", resp.StatusCode)
	}

	body, _ := proto.Marshal(&qschedulerv1.CreateSchedulerPoolRequest{PoolId: "csrf"})
	for _, ct := range []string{"", "text/plain", "text/plain; charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp := do(req)
		noCORS(ct, resp)
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q: HTTP %d, want 415", ct, resp.StatusCode)
		}
	}
	lp := must(ts.grpcClients().view.ListSchedulerPools(context.Background(), &qschedulerv1.ListSchedulerPoolsRequest{}))(t)
	if len(lp.PoolIds) != 0 {
		t.Errorf("pools %v: a simple cross-origin request created one", lp.PoolIds)
	}
	// Even a request a browser would send after a preflight gets no
	// permission to read the answer.
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", prpc.ContentTypeBinary)
	noCORS("POST", do(req))
}

// slowServer runs the service with short HTTP timeouts and a long grace.
func slowServer(t *testing.T) *testServer {
	return startServer(t, "--http-read-header-timeout=300ms", "--http-read-timeout=500ms", "--http-write-timeout=2s",
		"--http-idle-timeout=500ms", "--shutdown-grace=1m")
}

// closedWithin reads conn until the server closes it and fails the test if
// that takes longer than limit.
func closedWithin(t *testing.T, what string, r io.Reader, limit time.Duration) {
	t.Helper()
	t0 := time.Now()
	_, _ = io.Copy(io.Discard, r) // EOF, or a reset: closed either way
	if d := time.Since(t0); d > limit {
		t.Errorf("%s: closed after %v, want within %v", what, d, limit)
	}
}

// startSlowBody sends a request's headers announcing a body and waits for
// the server's 100 Continue, which it sends once the handler reads the body;
// the body never comes.
func startSlowBody(t *testing.T, ts *testServer) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", ts.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A bound on the test, should the server never answer.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n", callbacksPath, ts.httpAddr, prpc.ContentTypeBinary)
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("waiting for 100 Continue: %q, %v", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("\x0a\x05ab")); err != nil { // 4 bytes of 1000
		t.Fatal(err)
	}
	return conn, br
}

// TestSlowClientsAreClosed: headers trickled a byte at a time, a body that
// never ends and an idle kept-alive connection are each closed within their
// timeout.
func TestSlowClientsAreClosed(t *testing.T) {
	ts := slowServer(t)

	conn, err := net.Dial("tcp", ts.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// 20 s of headers at 10 ms a byte: the server gives 300 ms.
		hdr := "POST " + callbacksPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + strings.Repeat("a", 2000)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := range len(hdr) {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{hdr[i]}); err != nil {
				return
			}
		}
	}()
	closedWithin(t, "headers a byte at a time", conn, 10*time.Second)

	_, br := startSlowBody(t, ts)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(prpc.HeaderGRPCCode) != "3" {
		t.Errorf("a body that never ends: HTTP %d code %s, want 400 and 3", resp.StatusCode, resp.Header.Get(prpc.HeaderGRPCCode))
	}
	closedWithin(t, "a body that never ends", br, 10*time.Second)

	idle, err := net.Dial("tcp", ts.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", ts.httpAddr)
	ibr := bufio.NewReader(idle)
	resp, err = http.ReadResponse(ibr, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	closedWithin(t, "an idle kept-alive connection", ibr, 10*time.Second)
}

// TestShutdownDoesNotWaitForSlowClients: a client that never finishes its
// body holds shutdown for the read timeout (500 ms here), not for the whole
// grace (1 min).
func TestShutdownDoesNotWaitForSlowClients(t *testing.T) {
	ts := slowServer(t)
	_, br := startSlowBody(t, ts)
	t0 := time.Now()
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 20*time.Second {
		t.Errorf("shutdown took %v with a slow client, want far less than the 1 min grace", d)
	}
	closedWithin(t, "the slow client's connection", br, 10*time.Second)
}

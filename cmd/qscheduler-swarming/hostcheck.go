package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"google.golang.org/grpc/codes"
)

// loopbackHosts are the names a loopback listener answers to by default.
var loopbackHosts = []string{"localhost", "127.0.0.1", "[::1]"}

// openPaths answer whatever the Host: probes and scrapers address a pod by
// its IP, and these paths only read the service's health and metrics.
var openPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// parseHosts splits the value of --http-host: names or name:port, separated
// by commas, or * alone for any Host.
func parseHosts(v string) ([]string, error) {
	var out []string
	for e := range strings.SplitSeq(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if e == "*" {
			if strings.TrimSpace(v) != "*" {
				return nil, fmt.Errorf("--http-host: * accepts any Host and goes alone, not in a list (%q)", v)
			}
			return []string{"*"}, nil
		}
		if _, _, ok := splitHost(e); !ok || strings.ContainsAny(e, "/ @?#") {
			return nil, fmt.Errorf("--http-host: %q is not a host name or name:port", e)
		}
		out = append(out, e)
	}
	return out, nil
}

// splitHost splits a Host value into its lower-case name (without brackets
// or a final dot) and its port ("" when absent).
func splitHost(host string) (name, port string, ok bool) {
	host = strings.ToLower(strings.TrimSpace(host))
	if host == "" {
		return "", "", false
	}
	name = host
	if h, p, err := net.SplitHostPort(host); err == nil {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return "", "", false
		}
		name, port = h, p
	} else {
		name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	}
	name = strings.TrimSuffix(name, ".")
	return name, port, name != ""
}

// hostCheck refuses requests whose Host is not one the service answers to,
// so that a page of another site whose name resolves to this server (DNS
// rebinding) cannot call it from a browser: the browser sends that site's
// name as the Host.
type hostCheck struct {
	anyHost bool
	names   map[string]bool // name → every port
	exact   map[string]bool // name:port
	shown   string          // the configuration, for the log

	log     *slog.Logger
	mu      sync.Mutex
	logged  time.Time // last warning
	refused int       // refusals since the last warning
}

// newHostCheck builds the check from --http-host's entries. With none, a
// loopback listener answers to loopbackHosts on any port, and any other
// listener is an error: which names it answers to must be configured.
func newHostCheck(entries []string, lis net.Addr, log *slog.Logger) (*hostCheck, error) {
	if len(entries) == 0 {
		ta, ok := lis.(*net.TCPAddr)
		if !ok || !ta.IP.IsLoopback() {
			return nil, fmt.Errorf("--http-addr %s is not a loopback address: set --http-host to the host names clients reach the service by (for example --http-host=qscheduler.example.com), or to * when a proxy in front checks them", lis)
		}
		entries = loopbackHosts
	}
	h := &hostCheck{names: map[string]bool{}, exact: map[string]bool{}, shown: strings.Join(entries, ","), log: log}
	for _, e := range entries {
		if e == "*" {
			h.anyHost = true
			continue
		}
		name, port, _ := splitHost(e)
		if port == "" {
			h.names[name] = true
		} else {
			h.exact[net.JoinHostPort(name, port)] = true
		}
	}
	return h, nil
}

func (h *hostCheck) allows(host string) bool {
	if h.anyHost {
		return true
	}
	name, port, ok := splitHost(host)
	if !ok {
		return false
	}
	return h.names[name] || (port != "" && h.exact[net.JoinHostPort(name, port)])
}

// wrap serves next for allowed Hosts and openPaths; every other request is
// 403 (PermissionDenied for pRPC clients).
func (h *hostCheck) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openPaths[r.URL.Path] || h.allows(r.Host) {
			next.ServeHTTP(w, r)
			return
		}
		h.warn(r)
		msg := fmt.Sprintf("Host %s is not a name this server answers to; --http-host lists them\n", quoteHost(r.Host))
		hd := w.Header()
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set(prpc.HeaderGRPCCode, strconv.Itoa(int(codes.PermissionDenied)))
		hd.Set("Content-Length", strconv.Itoa(len(msg)))
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(msg))
	})
}

// warn logs a refusal at most once a minute, with the number refused since
// the last line.
func (h *hostCheck) warn(r *http.Request) {
	h.mu.Lock()
	h.refused++
	now := time.Now()
	if now.Sub(h.logged) < time.Minute {
		h.mu.Unlock()
		return
	}
	n := h.refused
	h.refused, h.logged = 0, now
	h.mu.Unlock()
	h.log.Warn("refused HTTP requests for a Host this server does not answer to (--http-host)",
		"host", quoteHost(r.Host), "path", r.URL.Path, "peer", r.RemoteAddr, "refused", n, "http_host", h.shown)
}

// quoteHost quotes a Host for a message, cut to 128 bytes.
func quoteHost(host string) string {
	if len(host) > 128 {
		return strconv.Quote(host[:128]) + "…"
	}
	return strconv.Quote(host)
}

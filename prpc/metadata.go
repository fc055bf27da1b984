package prpc

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/metadata"
)

const binSuffix = "-bin"

// decodeBin decodes a "-bin" header value, padded or not (as gRPC does).
func decodeBin(v string) (string, error) {
	enc := base64.StdEncoding
	if len(v)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(v)
	return string(b), err
}

// headerToMD converts request headers into incoming gRPC metadata: keys are
// lower-cased and values of keys ending in "-bin" are base64-decoded. host,
// if not empty, becomes ":authority", as on a gRPC server.
func headerToMD(h http.Header, host string) (metadata.MD, error) {
	md := make(metadata.MD, len(h)+1)
	for k, vs := range h {
		key := strings.ToLower(k)
		if strings.HasSuffix(key, binSuffix) {
			dec := make([]string, 0, len(vs))
			for _, v := range vs {
				d, err := decodeBin(v)
				if err != nil {
					return nil, fmt.Errorf("header %s: value is not base64: %v", k, err)
				}
				dec = append(dec, d)
			}
			md[key] = append(md[key], dec...)
			continue
		}
		md[key] = append(md[key], vs...)
	}
	if host != "" {
		md[":authority"] = []string{host}
	}
	return md, nil
}

// reservedKey reports whether metadata key k must not become a
// header: the protocol's own headers and transport headers.
func reservedKey(k string) bool {
	switch k {
	case "content-type", "content-length", "content-encoding", "transfer-encoding",
		"connection", "x-content-type-options", "allow", "trailer", "te", "upgrade", "keep-alive":
		return true
	}
	return strings.HasPrefix(k, "x-prpc-") || strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-")
}

// validKey reports whether k is a valid gRPC metadata key.
func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// mdToHeader adds metadata to HTTP headers, base64-encoding "-bin" values.
// Reserved and invalid keys, and values that cannot be header values, are
// skipped.
func mdToHeader(md metadata.MD, h http.Header) {
	for k, vs := range md {
		k = strings.ToLower(k)
		if !validKey(k) || reservedKey(k) {
			continue
		}
		name := http.CanonicalHeaderKey(k)
		for _, v := range vs {
			if strings.HasSuffix(k, binSuffix) {
				v = base64.StdEncoding.EncodeToString([]byte(v))
			} else if strings.ContainsAny(v, "\r\n\x00") {
				continue
			}
			h.Add(name, v)
		}
	}
}

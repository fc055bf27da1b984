package prpc

import (
	"bytes"
	"fmt"
	"mime"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// Header names of the pRPC protocol.
const (
	// HeaderGRPCCode carries the numeric gRPC code of every response.
	HeaderGRPCCode = "X-Prpc-Grpc-Code"
	// HeaderTimeout carries the request timeout: digits and a unit H, M, S,
	// m, u or n (hours down to nanoseconds), e.g. "20S".
	HeaderTimeout = "X-Prpc-Grpc-Timeout"
	// HeaderStatusDetails carries the details of an error status, one
	// base64-encoded google.protobuf.Any per value.
	HeaderStatusDetails = "X-Prpc-Status-Details-Bin"
)

// Media types of the three pRPC encodings, as sent in Content-Type.
const (
	ContentTypeBinary = "application/prpc; encoding=binary"
	ContentTypeJSON   = "application/json"
	ContentTypeText   = "application/prpc; encoding=text"
)

// JSONPrefix precedes every JSON response body (XSSI protection).
const JSONPrefix = ")]}'\n"

// Encoding is a pRPC message encoding.
type Encoding int

const (
	// EncodingBinary is the protobuf wire format.
	EncodingBinary Encoding = iota
	// EncodingJSON is the protobuf JSON mapping (protojson).
	EncodingJSON
	// EncodingText is the protobuf text format (prototext).
	EncodingText
)

// String returns "binary", "json" or "text".
func (e Encoding) String() string {
	switch e {
	case EncodingBinary:
		return "binary"
	case EncodingJSON:
		return "json"
	case EncodingText:
		return "text"
	}
	return "Encoding(" + strconv.Itoa(int(e)) + ")"
}

// ContentType returns the media type for e.
func (e Encoding) ContentType() string {
	switch e {
	case EncodingJSON:
		return ContentTypeJSON
	case EncodingText:
		return ContentTypeText
	}
	return ContentTypeBinary
}

func (e Encoding) valid() bool { return e >= EncodingBinary && e <= EncodingText }

// encodingFromMediaType maps a parsed media type to an encoding.
func encodingFromMediaType(mt string, params map[string]string) (Encoding, bool) {
	switch mt {
	case "application/prpc":
		switch strings.ToLower(params["encoding"]) {
		case "", "binary":
			return EncodingBinary, true
		case "json":
			return EncodingJSON, true
		case "text":
			return EncodingText, true
		}
		return 0, false
	case "application/json":
		return EncodingJSON, true
	case "application/x-protobuf", "application/protobuf":
		return EncodingBinary, true
	}
	return 0, false
}

// parseContentType returns the encoding of a response body. An absent
// Content-Type means binary.
func parseContentType(v string) (Encoding, error) {
	if strings.TrimSpace(v) == "" {
		return EncodingBinary, nil
	}
	return parseMediaType(v)
}

// parseRequestContentType returns the encoding of a request body, which must
// name one: a browser sends a body without a Content-Type, or with text/plain
// or a form encoding, to any origin without asking first (a CORS "simple"
// request), and none of them may be taken for a call.
func parseRequestContentType(v string) (Encoding, error) {
	if strings.TrimSpace(v) == "" {
		return 0, fmt.Errorf("no Content-Type; a request must name its encoding: %q, %q or %q",
			ContentTypeBinary, ContentTypeJSON, ContentTypeText)
	}
	return parseMediaType(v)
}

func parseMediaType(v string) (Encoding, error) {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return 0, fmt.Errorf("bad Content-Type %q: %v", v, err)
	}
	e, ok := encodingFromMediaType(mt, params)
	if !ok {
		return 0, fmt.Errorf("unsupported Content-Type %q", v)
	}
	return e, nil
}

// parseAccept picks the response encoding from Accept header values: the
// supported media range with the highest quality, the first one on a tie.
// Absent means binary, as do "*/*" and "application/*". Malformed ranges are
// ignored; an error means that nothing acceptable is supported.
func parseAccept(values []string) (Encoding, error) {
	if len(values) == 0 {
		return EncodingBinary, nil
	}
	best, bestQ, found, empty := EncodingBinary, -1.0, false, true
	for _, v := range values {
		for r := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(r) == "" {
				continue
			}
			empty = false
			mt, params, err := mime.ParseMediaType(r)
			if err != nil {
				continue
			}
			q := 1.0
			if qs, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(qs, 64); err != nil || q < 0 || q > 1 {
					continue
				}
			}
			if q == 0 {
				continue
			}
			var e Encoding
			switch mt {
			case "*/*", "application/*":
				e = EncodingBinary
			default:
				var ok bool
				if e, ok = encodingFromMediaType(mt, params); !ok {
					continue
				}
			}
			if q > bestQ {
				best, bestQ, found = e, q, true
			}
		}
	}
	if empty {
		return EncodingBinary, nil
	}
	if !found {
		return 0, fmt.Errorf("the Accept header %q names no supported encoding (binary, json, text)", strings.Join(values, ", "))
	}
	return best, nil
}

func marshal(m proto.Message, e Encoding) ([]byte, error) {
	switch e {
	case EncodingJSON:
		return protojson.Marshal(m)
	case EncodingText:
		return prototext.MarshalOptions{Multiline: true}.Marshal(m)
	}
	return proto.Marshal(m)
}

// unmarshal decodes b into m. An empty (or, for JSON and text, blank) body is
// an empty message. Unknown JSON and text fields are ignored.
func unmarshal(b []byte, m proto.Message, e Encoding) error {
	switch e {
	case EncodingJSON:
		if len(bytes.TrimSpace(b)) == 0 {
			proto.Reset(m)
			return nil
		}
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m)
	case EncodingText:
		return prototext.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m)
	}
	return proto.Unmarshal(b, m)
}

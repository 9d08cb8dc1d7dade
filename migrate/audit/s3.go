package audit

import (
	"bytes"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// readS3 parses S3 server access logs: one request per line, space-separated fields,
// "-" for none, the time in brackets, the request-URI, referrer and user agent quoted.
// Fields: owner, bucket, [time], remote IP, requester, request ID, operation, key
// (URL-encoded), "request-URI", status, ... (later fields are optional).
func readS3(data []byte) ([]Access, error) {
	var out []Access
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f, err := s3Fields(string(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields, an S3 access log line has at least 10", n+1, len(f))
		}
		t, err := time.Parse("02/Jan/2006:15:04:05 -0700", f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: time %q: want [02/Jan/2006:15:04:05 -0700]", n+1, f[2])
		}
		key := dash(f[7])
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		status, _ := strconv.Atoi(dash(f[9]))
		out = append(out, Access{
			Time: t.UTC(), Bucket: dash(f[1]), Object: key, Operation: s3Operation(f[6]), Action: f[6],
			Identity: dash(f[4]), Status: status, SourceIP: dash(f[3]), RequestID: dash(f[5]), Line: n + 1,
		})
	}
	return out, nil
}

// s3Fields splits a log line on spaces; "quoted" and [bracketed] fields keep theirs.
func s3Fields(line string) ([]string, error) {
	var out []string
	for i := 0; i < len(line); {
		switch line[i] {
		case ' ':
			i++
		case '"', '[':
			end := byte('"')
			if line[i] == '[' {
				end = ']'
			}
			j := strings.IndexByte(line[i+1:], end)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c at column %d", line[i], i+1)
			}
			out = append(out, line[i+1:i+1+j])
			i += j + 2
		default:
			j := strings.IndexByte(line[i:], ' ')
			if j < 0 {
				j = len(line) - i
			}
			out = append(out, line[i:i+j])
			i += j
		}
	}
	return out, nil
}

func dash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// s3Operation classifies an S3 access log operation (REST.GET.OBJECT, ...).
func s3Operation(op string) string {
	switch {
	case strings.HasSuffix(op, ".DELETE.OBJECT"), strings.HasSuffix(op, ".DELETE.UPLOAD"):
		return OpDelete
	case strings.HasSuffix(op, ".GET.OBJECT"), strings.HasSuffix(op, ".HEAD.OBJECT"), strings.HasSuffix(op, ".GET.OBJECT_TAGGING"):
		return OpRead
	case strings.HasSuffix(op, ".PUT.OBJECT"), strings.HasSuffix(op, ".COPY.OBJECT"), strings.Contains(op, ".UPLOAD"), strings.HasSuffix(op, ".PUT.PART"):
		return OpWrite
	case strings.HasSuffix(op, ".GET.BUCKET"), strings.HasSuffix(op, ".GET.BUCKETVERSIONS"):
		return OpList
	}
	return OpOther
}

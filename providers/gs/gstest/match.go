package gstest

import (
	"net/http"
	"strings"

	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// Op is the kind of JSON API request a fault rule matches.
type Op string

const (
	OpAny    Op = ""
	OpRead   Op = "read"   // a media download (alt=media)
	OpStat   Op = "stat"   // an object's or a bucket's metadata
	OpList   Op = "list"   // a listing of objects
	OpPut    Op = "put"    // an upload (simple, multipart or resumable)
	OpDelete Op = "delete" // an object delete
	OpCopy   Op = "copy"   // a rewrite or copy
	OpOther  Op = "other"
)

// Classify returns the op and bucket of a JSON API request.
func Classify(r *http.Request) (Op, string) {
	path := r.URL.EscapedPath()
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	switch {
	case strings.HasPrefix(path, "/upload/"):
		b := ""
		if len(segs) > 4 {
			b = segs[4]
		}
		return OpPut, b
	case len(segs) < 4 || segs[0] != "storage" || segs[2] != "b":
		return OpOther, ""
	}
	bucket := segs[3]
	switch {
	case len(segs) == 4:
		return OpStat, bucket
	case len(segs) == 5 && segs[4] == "o" && r.Method == http.MethodGet:
		return OpList, bucket
	case len(segs) > 6 && (segs[6] == "rewriteTo" || segs[6] == "copyTo"):
		return OpCopy, bucket
	case len(segs) == 6 && r.Method == http.MethodDelete:
		return OpDelete, bucket
	case len(segs) == 6 && r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media":
		return OpRead, bucket
	case len(segs) == 6 && r.Method == http.MethodGet:
		return OpStat, bucket
	}
	return OpOther, bucket
}

// Match returns an s3test.Rule matcher for requests of op (OpAny: every op) to
// bucket ("" for any): the fault proxy classifies S3 requests, so GCS rules match
// with this instead.
func Match(op Op, bucket string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		o, b := Classify(r)
		return (op == OpAny || o == op) && (bucket == "" || b == bucket)
	}
}

// Rule returns a fault rule for requests of op to bucket.
func Rule(op Op, bucket string, f s3test.Fault) *s3test.Rule {
	return &s3test.Rule{Match: Match(op, bucket), Fault: f}
}

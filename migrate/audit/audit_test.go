package audit

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
	"time"
)

// Each format's log holds ferry's own traffic, one foreign read and one foreign
// delete; the parser must give every entry's who, what, which object and when.
var formatLogs = map[string]string{
	"s3": `79a59df900b949e5 site-bucket [06/Feb/2026:10:00:38 +0000] 192.0.2.3 arn:aws:iam::123456789012:user/ferry 3E57427F3EXAMPLE REST.GET.OBJECT users/a%20b.json "GET /site-bucket/users/a%20b.json HTTP/1.1" 200 - 113 113 7 - "-" "ferry/1" - s9lzHY= SigV4 ECDHE AuthHeader site-bucket.s3.amazonaws.com TLSv1.2 - -
79a59df900b949e5 site-bucket [06/Feb/2026:10:05:00 +0000] 198.51.100.7 arn:aws:iam::123456789012:user/mallory 4F68538G4FEXAMPLE REST.GET.OBJECT users/c.json "GET /site-bucket/users/c.json HTTP/1.1" 200 - 99 99 5 - "-" "curl/8" - x= SigV4 ECDHE AuthHeader site-bucket.s3.amazonaws.com TLSv1.2 - -
79a59df900b949e5 site-bucket [06/Feb/2026:10:06:00 +0000] 198.51.100.7 arn:aws:iam::123456789012:user/mallory 5A79649H5GEXAMPLE REST.DELETE.OBJECT users/d.json "DELETE /site-bucket/users/d.json HTTP/1.1" 204 - - - 5 - "-" "curl/8" - x= SigV4 ECDHE AuthHeader site-bucket.s3.amazonaws.com TLSv1.2 - -
`,
	"minio": `{"version":"1","deploymentid":"d1","time":"2026-02-06T10:00:38.123Z","event":"","trigger":"incoming","api":{"name":"GetObject","bucket":"site-bucket","object":"users/a b.json","status":"OK","statusCode":200},"remotehost":"192.0.2.3","requestID":"3E57427F3EXAMPLE","userAgent":"ferry/1","accessKey":"ferryroot","parentUser":"ferryroot"}
{"version":"1","deploymentid":"d1","time":"2026-02-06T10:05:00Z","trigger":"incoming","api":{"name":"GetObject","bucket":"site-bucket","object":"users/c.json","statusCode":200},"remotehost":"198.51.100.7","requestID":"4F68538G4FEXAMPLE","accessKey":"mallory","parentUser":"ferryroot"}
{"version":"1","deploymentid":"d1","time":"2026-02-06T10:06:00Z","trigger":"incoming","api":{"name":"DeleteMultipleObjects","bucket":"site-bucket","objects":[{"objectName":"users/d.json"}],"statusCode":200},"remotehost":"198.51.100.7","requestID":"5A79649H5GEXAMPLE","accessKey":"mallory"}
`,
	"oci": `[{"eventType":"com.oraclecloud.objectstorage.getobject","cloudEventsVersion":"0.1","eventTypeVersion":"2.0","source":"ObjectStorage","eventTime":"2026-02-06T10:00:38.123Z","data":{"eventName":"GetObject","identity":{"principalName":"ferry","principalId":"ocid1.user.oc1..ferry","ipAddress":"192.0.2.3"},"request":{"id":"3E57427F3EXAMPLE","path":"/n/ns/b/site-bucket/o/users/a%20b.json","action":"GET"},"response":{"status":"200"}}},
{"eventType":"com.oraclecloud.objectstorage.getobject","eventTime":"2026-02-06T10:05:00Z","data":{"eventName":"GetObject","identity":{"principalName":"mallory","principalId":"ocid1.user.oc1..mallory","ipAddress":"198.51.100.7"},"request":{"id":"4F68538G4FEXAMPLE","path":"/n/ns/b/site-bucket/o/users/c.json"},"response":{"status":"200"}}},
{"eventType":"com.oraclecloud.objectstorage.deleteobject","eventTime":"2026-02-06T10:06:00Z","data":{"eventName":"DeleteObject","identity":{"principalName":"mallory","ipAddress":"198.51.100.7"},"request":{"id":"5A79649H5GEXAMPLE","path":"/n/ns/b/site-bucket/o/users/d.json"},"response":{"status":204}}}]
`,
	"gcs": `{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","status":{},"authenticationInfo":{"principalEmail":"ferry@proj.iam.gserviceaccount.com"},"requestMetadata":{"callerIp":"192.0.2.3"},"serviceName":"storage.googleapis.com","methodName":"storage.objects.get","resourceName":"projects/_/buckets/site-bucket/objects/users/a b.json"},"insertId":"3E57427F3EXAMPLE","resource":{"type":"gcs_bucket"},"timestamp":"2026-02-06T10:00:38.123Z","logName":"projects/p/logs/cloudaudit.googleapis.com%2Fdata_access"}
{"protoPayload":{"authenticationInfo":{"principalEmail":"mallory@example.com"},"requestMetadata":{"callerIp":"198.51.100.7"},"methodName":"storage.objects.get","resourceName":"projects/_/buckets/site-bucket/objects/users/c.json"},"timestamp":"2026-02-06T10:05:00Z"}
{"protoPayload":{"authenticationInfo":{"principalEmail":"mallory@example.com"},"requestMetadata":{"callerIp":"198.51.100.7"},"methodName":"storage.objects.delete","resourceName":"projects/_/buckets/site-bucket/objects/users/d.json"},"timestamp":"2026-02-06T10:06:00Z"}
`,
	"azure": `{"records":[{"time":"2026-02-06T10:00:38.123Z","operationName":"GetBlob","statusCode":200,"callerIpAddress":"192.0.2.3:51234","correlationId":"3E57427F3EXAMPLE","identity":{"type":"AccountKey","tokenHash":"key1(AB12)"},"properties":{"objectKey":"/acct/site-bucket/users/a b.json"},"uri":"https://acct.blob.core.windows.net/site-bucket/users/a%20b.json"},
{"time":"2026-02-06T10:05:00Z","operationName":"GetBlob","statusCode":200,"callerIpAddress":"198.51.100.7:40000","correlationId":"4F68538G4FEXAMPLE","identity":{"type":"OAuth","requester":{"upn":"mallory@example.com","objectId":"0000"}},"properties":{"objectKey":"/acct/site-bucket/users/c.json"}}]}
{"TimeGenerated":"2026-02-06T10:06:00Z","OperationName":"DeleteBlob","StatusCode":"202","CallerIpAddress":"198.51.100.7:40001","CorrelationId":"5A79649H5GEXAMPLE","Uri":"https://acct.blob.core.windows.net/site-bucket/users/d.json","AuthenticationType":"OAuth","RequesterUpn":"mallory@example.com"}
`,
}

func TestFormats(t *testing.T) {
	ferry := map[string]string{"s3": "arn:aws:iam::123456789012:user/ferry", "minio": "ferryroot", "oci": "ferry",
		"gcs": "ferry@proj.iam.gserviceaccount.com", "azure": "AccountKey key1(AB12)"}
	mallory := map[string]string{"s3": "arn:aws:iam::123456789012:user/mallory", "minio": "mallory", "oci": "mallory",
		"gcs": "mallory@example.com", "azure": "mallory@example.com"}
	for format, log := range formatLogs {
		t.Run(format, func(t *testing.T) {
			for _, asked := range []string{format, "auto"} {
				got, gotFormat, err := Read(strings.NewReader(log), "log", asked)
				if err != nil {
					t.Fatal(err)
				}
				if gotFormat != format {
					t.Fatalf("format %q read as %q", asked, gotFormat)
				}
				if len(got) != 3 {
					t.Fatalf("%d accesses, want 3: %+v", len(got), got)
				}
				want := []struct {
					who, op, object string
					at              string
				}{
					{ferry[format], OpRead, "users/a b.json", "2026-02-06T10:00:38Z"},
					{mallory[format], OpRead, "users/c.json", "2026-02-06T10:05:00Z"},
					{mallory[format], OpDelete, "users/d.json", "2026-02-06T10:06:00Z"},
				}
				for i, w := range want {
					a := got[i]
					if a.Identity != w.who || a.Operation != w.op || a.Object != w.object || a.Bucket != "site-bucket" ||
						a.Time.Truncate(time.Second).Format(time.RFC3339) != w.at {
						t.Errorf("entry %d = %+v, want %s %s %s at %s", i, a, w.who, w.op, w.object, w.at)
					}
					if a.Status < 200 || a.Status > 299 {
						t.Errorf("entry %d status %d", i, a.Status)
					}
					if a.Line < 1 {
						t.Errorf("entry %d line %d", i, a.Line)
					}
				}
				if format != "gcs" && got[1].RequestID != "4F68538G4FEXAMPLE" {
					t.Errorf("request id %q", got[1].RequestID)
				}
				if got[2].SourceIP != "198.51.100.7" {
					t.Errorf("source ip %q", got[2].SourceIP)
				}
			}
		})
	}
}

func TestGzip(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(formatLogs["s3"]))
	zw.Close()
	got, format, err := Read(&buf, "log.gz", "auto")
	if err != nil || format != "s3" || len(got) != 3 {
		t.Fatalf("gzip: %d accesses, format %q, %v", len(got), format, err)
	}
}

func TestBadLogs(t *testing.T) {
	for _, c := range []struct{ name, format, log, want string }{
		{"empty", "auto", "\n\n", "empty log"},
		{"unknown format", "cloudtrail", "x", `unknown log format "cloudtrail"`},
		{"s3 short line", "s3", "owner bucket [06/Feb/2026:10:00:38 +0000] ip\n", "line 1: 4 fields"},
		{"s3 bad time", "s3", strings.Replace(formatLogs["s3"], "06/Feb/2026:10:05:00", "2026-02-06", 1), "line 2: time"},
		{"s3 unterminated quote", "s3", `o b [06/Feb/2026:10:00:38 +0000] ip who id REST.GET.OBJECT k "GET /b/k 200`, "unterminated"},
		{"minio bad time", "minio", `{"time":"yesterday","api":{"name":"GetObject"}}`, `line 1: time "yesterday"`},
		{"json garbage on line 3", "minio", formatLogs["minio"][:strings.Index(formatLogs["minio"], "\n")+1] + "\n{nope\n", "line 3"},
		{"oci no event", "oci", `{"eventTime":"2026-02-06T10:00:00Z","data":{}}`, "no data.eventName"},
		{"gcs not audit", "gcs", `{"timestamp":"2026-02-06T10:00:00Z"}`, "no protoPayload.methodName"},
		{"azure not blob log", "azure", `{"time":"2026-02-06T10:00:00Z"}`, "no operationName"},
		{"not an object", "minio", `42`, "must be a JSON object"},
		{"sniff fails", "auto", `{"hello":1}`, "cannot tell"},
	} {
		_, _, err := Read(strings.NewReader(c.log), "access.log", c.format)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "access.log") {
			t.Errorf("%s: error %v, want one naming access.log and %q", c.name, err, c.want)
		}
	}
}

func TestMinioSkipsNonAPIEntries(t *testing.T) {
	got, _, err := Read(strings.NewReader(`{"time":"2026-02-06T10:00:00Z","event":"console","api":{}}`+"\n"+formatLogs["minio"]), "l", "minio")
	if err != nil || len(got) != 3 || got[0].Line != 2 {
		t.Fatalf("%d accesses (first line %v), %v", len(got), got, err)
	}
}

func FuzzAuditRead(f *testing.F) {
	for _, l := range formatLogs {
		f.Add([]byte(l))
	}
	f.Add([]byte(`[{"records":[]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range append([]string{"auto"}, Formats...) {
			Read(bytes.NewReader(data), "fuzz", format) // must not panic
		}
	})
}

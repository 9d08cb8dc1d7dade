package providers

import (
	"context"
	"slices"
	"testing"
)

func TestEndpointServersSpellings(t *testing.T) {
	ctx := context.Background()
	same := [][2]string{
		{"http://localhost:9000", "http://127.0.0.1:9000"},
		{"http://localhost:9000", "http://[::1]:9000"},
		{"http://127.0.0.1:9000", "http://[::1]:9000/"},
		{"http://127.0.0.2:9000", "http://127.0.0.1:9000"},
		{"HTTP://LocalHost.:9000", "http://localhost:9000/"},
		{"https://s3.example.internal", "https://S3.Example.Internal.:443/"},
		{"http://s3.example.internal", "http://s3.example.internal:80"},
		{"http://10.1.2.3:9000", "http://10.1.2.3:9000/path"},
		{"http://[::ffff:10.1.2.3]:9000", "http://10.1.2.3:9000"},
		{"https://s3.us-east-1.amazonaws.com", "https://s3.eu-west-1.amazonaws.com"}, // bucket names are global on AWS
	}
	for _, c := range same {
		a, b := EndpointServers(ctx, c[0]), EndpointServers(ctx, c[1])
		if !sameServer(a, b) {
			t.Errorf("%s (%v) and %s (%v): not one server", c[0], a, c[1], b)
		}
	}
	differ := [][2]string{
		{"http://127.0.0.1:9000", "http://127.0.0.1:9001"},
		{"http://s3.example.internal", "https://s3.example.internal"},
		{"http://10.1.2.3:9000", "http://10.1.2.4:9000"},
		{"https://a.example.invalid", "https://b.example.invalid"},
	}
	for _, c := range differ {
		a, b := EndpointServers(ctx, c[0]), EndpointServers(ctx, c[1])
		if sameServer(a, b) {
			t.Errorf("%s (%v) and %s (%v): taken for one server", c[0], a, c[1], b)
		}
	}
	// Two names that only resolve to one shared address (two tenants behind one
	// ingress) are not taken for one server; a spelled address is.
	if sameServer([]string{"a.example:443", "~10.0.0.5:443"}, []string{"b.example:443", "~10.0.0.5:443"}) {
		t.Error("two names sharing a resolved address taken for one server")
	}
	if !sameServer([]string{"a.example:443", "~10.0.0.5:443"}, []string{"10.0.0.5:443"}) {
		t.Error("a name and the address it resolves to not taken for one server")
	}
}

func TestIdentityOverlaps(t *testing.T) {
	s3 := func(servers []string, bucket, prefix string) Identity {
		return Identity{Kind: "s3", Servers: servers, Container: bucket, Prefix: prefix}
	}
	srv := []string{"loopback:9000"}
	file := func(dir string, nodes ...FileNode) Identity { return Identity{Kind: "file", Dir: dir, Nodes: nodes} }
	n := func(i uint64) FileNode { return FileNode{Dev: 1, Ino: i} }
	cases := []struct {
		name string
		a, b Identity
		want bool
	}{
		{"same bucket and prefix", s3(srv, "b", "users/"), s3(srv, "b", "users/"), true},
		{"prefix inside", s3(srv, "b", "users/"), s3(srv, "b", "users/eu/"), true},
		{"raw prefix covers users2", s3(srv, "b", "users"), s3(srv, "b", "users2/"), true},
		{"whole bucket", s3(srv, "b", ""), s3(srv, "b", "x/"), true},
		{"sibling prefixes", s3(srv, "b", "a/"), s3(srv, "b", "b/"), false},
		{"other bucket", s3(srv, "b", ""), s3(srv, "c", ""), false},
		{"other server", s3(srv, "b", ""), s3([]string{"loopback:9001"}, "b", ""), false},
		{"other kind", s3(srv, "b", ""), Identity{Kind: "oci", Servers: srv, Container: "b"}, false},
		{"same dir", file("/d/t", n(3), n(2), n(1)), file("/d/t", n(3), n(2), n(1)), true},
		{"dir inside", file("/d/t/x", n(4), n(3), n(2), n(1)), file("/d/t", n(3), n(2), n(1)), true},
		{"sibling dirs", file("/d/a", n(5), n(2), n(1)), file("/d/b", n(6), n(2), n(1)), false},
		{"bind mount of the same dir", file("/mnt/site", n(3), n(7), n(1)), file("/d/t", n(3), n(2), n(1)), true},
		{"bind mount of a dir around the other", file("/mnt/site", n(2), n(7), n(1)), file("/d/t", n(3), n(2), n(1)), true},
		{"prefix-named siblings", file("/d/t", n(3), n(2), n(1)), file("/d/t2", n(8), n(2), n(1)), false},
	}
	for _, c := range cases {
		if got := c.a.Overlaps(c.b); got != c.want {
			t.Errorf("%s: %v overlaps %v = %v, want %v", c.name, c.a, c.b, got, c.want)
		}
		if got := c.b.Overlaps(c.a); got != c.want {
			t.Errorf("%s (reversed): %v", c.name, got)
		}
	}
	if !slices.Contains(EndpointServers(context.Background(), "http://localhost:9000"), "loopback:9000") {
		t.Error("localhost is not loopback")
	}
}

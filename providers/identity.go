package providers

import (
	"context"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Identity is what a store is, for overlap checks (see Identifier).
type Identity struct {
	// Kind is the provider: stores of different kinds never share an object.
	Kind string `json:"kind"`
	// Servers name the server an object store is reached at: "host:port" as spelled
	// (lowercase, no trailing dot, default port filled in), "ip:port" for an IP literal
	// and, prefixed with "~", for each address the host resolves to; "loopback:port"
	// for any loopback address; or a provider-wide name ("aws", "oci-region:r"). Two
	// stores are on one server when the sets share an element that at least one of
	// them spelled (two names that merely resolve to one shared address, such as two
	// tenants behind one ingress, are not taken for one server: the marker object
	// catches what names cannot tell).
	Servers []string `json:"servers,omitempty"`
	// Container is the bucket (s3) or namespace/bucket (oci).
	Container string `json:"container,omitempty"`
	// Prefix is the raw key prefix under the container: "users" also covers "users2/".
	Prefix string `json:"prefix,omitempty"`
	// Dir is a file store's root with every symlink resolved.
	Dir string `json:"dir,omitempty"`
	// Nodes are the device and inode of a file store's root and of each directory
	// above it, root first: a bind mount or a hard-linked path is the same node.
	Nodes []FileNode `json:"nodes,omitempty"`
}

// FileNode is a directory's device and inode.
type FileNode struct{ Dev, Ino uint64 }

// String names the identity for messages.
func (a Identity) String() string {
	switch {
	case a.Dir != "":
		return a.Kind + " " + a.Dir
	case len(a.Servers) > 0:
		return a.Kind + " " + a.Container + "/" + a.Prefix + " at " + strings.Join(a.Servers, ",")
	}
	return a.Kind + " " + a.Container + "/" + a.Prefix
}

// Overlaps reports whether a and b may share an object: the same store, one root
// equal to, inside or around the other.
func (a Identity) Overlaps(b Identity) bool {
	if a.Kind == "" || a.Kind != b.Kind {
		return false
	}
	if a.Dir != "" || b.Dir != "" {
		if a.Dir != "" && b.Dir != "" && (a.Dir == b.Dir || dirWithin(a.Dir, b.Dir) || dirWithin(b.Dir, a.Dir)) {
			return true
		}
		// A bind mount (or any second path to one directory): the root of one is the
		// other's root or one of its ancestors.
		if len(a.Nodes) > 0 && len(b.Nodes) > 0 {
			return slices.Contains(b.Nodes, a.Nodes[0]) || slices.Contains(a.Nodes, b.Nodes[0])
		}
		return false
	}
	if a.Container != b.Container || !sameServer(a.Servers, b.Servers) {
		return false
	}
	return strings.HasPrefix(a.Prefix, b.Prefix) || strings.HasPrefix(b.Prefix, a.Prefix)
}

func sameServer(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			xr, yr := strings.HasPrefix(x, "~"), strings.HasPrefix(y, "~")
			if xr && yr {
				continue // both only resolved to it
			}
			if strings.TrimPrefix(x, "~") == strings.TrimPrefix(y, "~") {
				return true
			}
		}
	}
	return false
}

func dirWithin(dir, root string) bool {
	rel, err := filepath.Rel(root, dir)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// lookupTimeout bounds the resolution of one endpoint's host.
const lookupTimeout = 5 * time.Second

// EndpointServers normalises an endpoint URL (http(s)://host[:port][/path]) into
// Identity.Servers: scheme's default port filled in, host in lowercase without a
// trailing dot, and the addresses the host resolves to (a host that does not
// resolve keeps only its spelling). Any loopback address is "loopback:port", so
// localhost, 127.0.0.1 and [::1] name one server.
func EndpointServers(ctx context.Context, endpoint string) []string {
	u, err := url.Parse(strings.TrimSpace(endpoint))
	if err != nil || u.Host == "" {
		return []string{strings.ToLower(strings.TrimSpace(endpoint))}
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	port := u.Port()
	if port == "" {
		port = "443"
		if strings.EqualFold(u.Scheme, "http") {
			port = "80"
		}
	}
	ipKey := func(ip net.IP) string {
		if ip.IsLoopback() {
			return "loopback:" + port
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		return net.JoinHostPort(ip.String(), port)
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		return []string{ipKey(ip)}
	}
	out := []string{net.JoinHostPort(host, port)}
	if strings.HasSuffix(host, ".amazonaws.com") {
		out = append(out, "aws")
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(lctx, host)
	if err != nil || len(addrs) == 0 {
		return out
	}
	allLoop := true
	for _, a := range addrs {
		allLoop = allLoop && a.IP.IsLoopback()
	}
	if allLoop {
		// A name for this machine itself (localhost, an /etc/hosts alias): spelled.
		return append(out, "loopback:"+port)
	}
	for _, a := range addrs {
		k := "~" + ipKey(a.IP)
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

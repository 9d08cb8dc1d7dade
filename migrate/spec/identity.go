package spec

// PlanURL is the normal form of the site's URL that a plan records as what it was
// made against: the canonical URL for object stores (scheme and bucket normalised as
// in Digest), the resolved absolute directory for a file store (a relative
// file://./dir names another directory once the spec moves, so it is a change).
func (s *Site) PlanURL() string { return planURL(s.loc, s.RawURL, s.URL) }

// PlanEndpoint is the site's endpoint in normal form ("" for the store's default).
func (s *Site) PlanEndpoint() string { return planEndpoint(s.loc, s.Endpoint) }

// PlanURL is Site.PlanURL for the target.
func (t *Target) PlanURL() string { return planURL(t.loc, t.RawURL, t.URL) }

// PlanEndpoint is Site.PlanEndpoint for the target.
func (t *Target) PlanEndpoint() string { return planEndpoint(t.loc, t.Endpoint) }

func planURL(loc location, raw, resolved string) string {
	switch {
	case loc.scheme == "file" && loc.resolved != "":
		return loc.resolved
	case loc.canonical != "":
		return loc.canonical
	case resolved != "":
		return resolved // a Spec built in code, not parsed
	}
	return raw
}

func planEndpoint(loc location, written string) string {
	if loc.scheme != "" {
		return loc.endpoint
	}
	return written
}

// Container is the site's bucket (s3, oci, gs) or container (azblob) and the key
// prefix under it as written, both "" for a file site: what the store's access logs
// name (ferry audit).
func (s *Site) Container() (bucket, prefix string) { return s.loc.bucket, s.loc.prefix }

// Container is the target's bucket or container and key prefix (see Site.Container).
func (t *Target) Container() (bucket, prefix string) { return t.loc.bucket, t.loc.prefix }

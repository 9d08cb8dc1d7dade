package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

const specFile = "/etc/ferry/ferry.yaml"

// base is a small valid spec. Its line numbers matter to the tests that edit it:
//
//	1 migration
//	3-5 sources[0] (a)      6-8 sources[1] (b)
//	9-10 target             11-12 records
const base = `migration: m1
sources:
  - name: a
    role: primary
    url: file:///srv/a
  - name: b
    role: backup
    url: file:///srv/b
target:
  url: file:///srv/target
records:
  user: '^(?P<user>[^/]+)/'
`

// edit replaces 1-based lines of base ("" deletes the line) and appends extra.
func edit(lines map[int]string, extra string) string {
	src := strings.Split(strings.TrimSuffix(base, "\n"), "\n")
	var out []string
	for i, l := range src {
		if r, ok := lines[i+1]; ok {
			if r == "" {
				continue
			}
			l = r
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n") + "\n" + extra
}

func mustParse(t *testing.T, doc string) *Spec {
	t.Helper()
	s, err := Parse([]byte(doc), specFile)
	if err != nil {
		t.Fatalf("Parse: %v\n--- spec ---\n%s", err, doc)
	}
	return s
}

func mustLoad(t *testing.T, path string) *Spec {
	t.Helper()
	s, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return s
}

// all returns every *Error in err.
func all(err error) []*Error {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return nil
}

func TestBaseIsValid(t *testing.T) {
	mustParse(t, base)
}

func TestFullSpec(t *testing.T) {
	s := mustLoad(t, "testdata/full.yaml")
	abs, _ := filepath.Abs("testdata/full.yaml")
	if s.Path != abs || s.Dir != filepath.Dir(abs) {
		t.Errorf("Path, Dir = %q, %q", s.Path, s.Dir)
	}
	if s.Migration != "us-users-2022" {
		t.Errorf("Migration = %q", s.Migration)
	}
	if got, want := s.StatePath(), filepath.Join(s.Dir, "ferry.db"); got != want {
		t.Errorf("StatePath = %q, want %q", got, want)
	}
	if len(s.Sources) != 3 {
		t.Fatalf("%d sources", len(s.Sources))
	}
	va := s.Sources[0]
	if va.Name != "virginia" || va.Role != RolePrimary || va.URL != "s3://legacy-users/users/" ||
		va.Endpoint != "https://s3.va.example.internal" || va.Region != "us-east-1" ||
		va.Credentials.Profile != "va-migrator" || va.PartSize != DefaultPartSize {
		t.Errorf("virginia = %+v", va)
	}
	if sg, ok := s.Site("singapore"); !ok || sg.Role != RoleBackup || sg.URL != "s3://backup-users/2022-06/users/" {
		t.Errorf("Site(singapore) = %+v, %v", sg, ok)
	}
	if ar, ok := s.Site("archive"); !ok || ar.URL != "file:///mnt/archive/users" {
		t.Errorf("Site(archive) = %+v, %v", ar, ok)
	}
	if _, ok := s.Site("nowhere"); ok {
		t.Error("Site(nowhere) found")
	}
	tg := s.Target
	if tg.URL != "oci://mynamespace/us-users/users/" || tg.Region != "us-ashburn-1" ||
		tg.Credentials.OCIProfile != "DEFAULT" || tg.KMSKeyID != "ocid1.key.oc1..example" ||
		strings.Join(tg.Residency, ",") != "us-ashburn-1,us-phoenix-1" {
		t.Errorf("target = %+v", tg)
	}
	if !tg.InResidency("us-phoenix-1") || tg.InResidency("eu-frankfurt-1") {
		t.Error("InResidency")
	}
	r := s.Records
	if r.UserPattern != `^(?P<user>[^/]+)/` || r.User == nil || strings.Join(r.Include, ",") != "**" ||
		len(r.Exclude) != 0 || r.Conflicts != ConflictFail {
		t.Errorf("records = %+v", r)
	}
	if s.Copy != (Copy{Concurrency: 32, PartSize: 16 << 20, Retries: 5}) {
		t.Errorf("copy = %+v", s.Copy)
	}
	if s.Verify != (Verify{Reread: false, Concurrency: 32}) {
		t.Errorf("verify = %+v", s.Verify)
	}
	d := s.Delete
	if d.Mode != ModeSoft || d.Grace != 72*time.Hour || d.MaxDelete != AllMaxDelete || len(d.Stages) != 3 {
		t.Fatalf("delete = %+v", d)
	}
	want := []struct {
		name, sites string
		frac        float64
	}{{"canary", "singapore", 0.01}, {"backups", "singapore,archive", 1}, {"primary", "virginia", 1}}
	for i, w := range want {
		st := d.Stages[i]
		if st.Name != w.name || strings.Join(st.Sites, ",") != w.sites || st.SampleFraction() != w.frac ||
			st.Mode != ModeSoft || st.MaxDelete != AllMaxDelete {
			t.Errorf("stage %d = %+v", i, st)
		}
	}
	if st, ok := s.Stage("backups"); !ok || !st.HasSite("archive") || st.HasSite("virginia") {
		t.Errorf("Stage(backups) = %+v, %v", st, ok)
	}
	if s.Report.SigningKey != filepath.Join(s.Dir, "keys", "ferry.key") || s.Report.Signer != "Data Protection Office" {
		t.Errorf("report = %+v", s.Report)
	}

	pc := va.ProviderConfig(s.Migration)
	if pc.Name != "virginia" || pc.URL != va.URL || pc.Endpoint != va.Endpoint || pc.Region != "us-east-1" ||
		pc.Credentials["profile"] != "va-migrator" || len(pc.Credentials) != 1 || pc.PartSize != DefaultPartSize ||
		pc.Migration != "us-users-2022" || pc.KMSKeyID != "" {
		t.Errorf("site ProviderConfig = %+v", pc)
	}
	tc := tg.ProviderConfig(s.Migration)
	if tc.Name != TargetName || tc.URL != tg.URL || tc.Region != "us-ashburn-1" || tc.KMSKeyID != tg.KMSKeyID ||
		tc.Credentials["oci_profile"] != "DEFAULT" || tc.Migration != "us-users-2022" {
		t.Errorf("target ProviderConfig = %+v", tc)
	}
	if len(s.Digest()) != 64 {
		t.Errorf("Digest = %q", s.Digest())
	}
}

func TestDefaults(t *testing.T) {
	s := mustLoad(t, "testdata/minimal.yaml")
	dir := s.Dir
	if s.StatePath() != filepath.Join(dir, DefaultStateFile) {
		t.Errorf("StatePath = %q", s.StatePath())
	}
	if s.Sources[0].URL != "file://"+filepath.ToSlash(filepath.Join(dir, "a")) || s.Sources[0].RawURL != "file://./a" {
		t.Errorf("URL = %q, RawURL = %q", s.Sources[0].URL, s.Sources[0].RawURL)
	}
	if s.Target.URL != "file://"+filepath.ToSlash(filepath.Join(dir, "target")) {
		t.Errorf("target URL = %q", s.Target.URL)
	}
	if s.Sources[0].Credentials.Map() != nil || !s.Sources[0].Credentials.IsZero() {
		t.Error("credentials not empty")
	}
	if strings.Join(s.Records.Include, ",") != "**" || s.Records.Exclude == nil || len(s.Records.Exclude) != 0 ||
		s.Records.Conflicts != ConflictFail {
		t.Errorf("records = %+v", s.Records)
	}
	if s.Copy != (Copy{Concurrency: 16, PartSize: 16 << 20, Retries: 5}) {
		t.Errorf("copy = %+v", s.Copy)
	}
	if s.Verify != (Verify{Concurrency: 16}) {
		t.Errorf("verify = %+v", s.Verify)
	}
	if s.Delete.Mode != ModeSoft || s.Delete.Grace != 72*time.Hour || s.Delete.MaxDelete.String() != "100%" ||
		s.Delete.Stages == nil || len(s.Delete.Stages) != 0 {
		t.Errorf("delete = %+v", s.Delete)
	}
	if s.Sources[0].PartSize != DefaultPartSize || s.Target.PartSize != DefaultPartSize {
		t.Error("part sizes not defaulted")
	}
	if !reflect.DeepEqual(s.Report, Report{}) {
		t.Errorf("report = %+v", s.Report)
	}
}

func TestMinioSpec(t *testing.T) {
	s := mustLoad(t, "testdata/minio.yaml")
	if s.StatePath() != "postgres://ferry@db.internal:5432/ferry?sslmode=disable" {
		t.Errorf("StatePath = %q", s.StatePath())
	}
	east, _ := s.Site("east")
	pc := east.ProviderConfig(s.Migration)
	if !pc.PathStyle || !pc.ChecksumWhenRequired || pc.PartSize != 16<<20 || pc.Quarantine != ".ferry-quarantine/" ||
		pc.Credentials["access_key_env"] != "EAST_ACCESS_KEY_ID" || pc.Credentials["secret_key_env"] != "EAST_SECRET_ACCESS_KEY" ||
		pc.Credentials["session_token_env"] != "EAST_SESSION_TOKEN" || pc.Endpoint != "http://127.0.0.1:9000" {
		t.Errorf("east = %+v", pc)
	}
	west, _ := s.Site("west")
	if west.PartSize != 8<<20 {
		t.Errorf("west part size = %d, want copy.part_size", west.PartSize)
	}
	if got := s.Target.Credentials.OCIConfigFile; got != filepath.Join(s.Dir, "oci", "config") {
		t.Errorf("oci_config_file = %q", got)
	}
	if s.Copy != (Copy{Concurrency: 64, PartSize: 8 << 20, Retries: 0}) || s.Verify != (Verify{Reread: true, Concurrency: 8}) {
		t.Errorf("copy %+v verify %+v", s.Copy, s.Verify)
	}
	if s.Records.Conflicts != ConflictPreferPrimary {
		t.Error("conflicts")
	}
	d := s.Delete
	if d.Mode != ModeHard || d.Grace != 36*time.Hour || d.MaxDelete != (MaxDelete{Count: 5000}) {
		t.Errorf("delete = %+v", d)
	}
	c, all := d.Stages[0], d.Stages[1]
	if c.Mode != ModeSoft || c.MaxDelete.String() != "10%" || c.Sample.String() != "0.5%" || c.SampleFraction() != 0.005 {
		t.Errorf("canary = %+v", c)
	}
	if all.Mode != ModeHard || all.MaxDelete.Count != 5000 || all.Sample != FullShare {
		t.Errorf("all = %+v", all)
	}
}

func TestStatePath(t *testing.T) {
	for _, tc := range []struct{ state, want string }{
		{"", "/etc/ferry/ferry.db"},
		{"state/ferry.db", "/etc/ferry/state/ferry.db"},
		{"../var/ferry.db", "/etc/var/ferry.db"},
		{"/var/lib/ferry/x.db", "/var/lib/ferry/x.db"},
		{"postgres://ferry@db/ferry", "postgres://ferry@db/ferry"},
		{"postgresql://db.internal/ferry?sslmode=require", "postgresql://db.internal/ferry?sslmode=require"},
	} {
		doc := base
		if tc.state != "" {
			doc = edit(nil, "state: '"+tc.state+"'\n")
		}
		if got := mustParse(t, doc).StatePath(); got != tc.want {
			t.Errorf("state %q: StatePath = %q, want %q", tc.state, got, tc.want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := Parse([]byte(edit(map[int]string{5: "    url: ftp://srv/a"}, "")), "ferry.yaml")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("not an *Error: %T %v", err, err)
	}
	if e.File != "ferry.yaml" || e.Line != 5 || e.Column != 10 || e.Key != "sources[0].url" {
		t.Errorf("error = %+v", e)
	}
	if !strings.HasPrefix(err.Error(), "ferry.yaml:5:10: sources[0].url: ") {
		t.Errorf("Error() = %q", err.Error())
	}
	_, err = Parse([]byte(edit(map[int]string{5: "    url: ftp://srv/a", 8: "    url: ftp://srv/b"}, "")), "ferry.yaml")
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 || es[0].Line != 5 || es[1].Line != 8 {
		t.Fatalf("want 2 errors at lines 5 and 8, got %T %v", err, err)
	}
	if !errors.As(err, &e) || e.Line != 5 {
		t.Errorf("errors.As(Errors, *Error) = %v", e)
	}
	if got := strings.Count(err.Error(), "\n"); got != 1 {
		t.Errorf("Errors.Error() has %d newlines", got)
	}
	if (&Error{File: "f", Msg: "m"}).Error() != "f: m" {
		t.Error("no position")
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestBadSpecs(t *testing.T) {
	const stages = "delete:\n  stages:\n" // lines 13-14
	for _, tc := range []struct {
		name string
		doc  string
		line int
		key  string
		msg  string
	}{
		// YAML itself.
		{"empty", "", 0, "", "empty"},
		{"comments only", "# nothing\n", 0, "", "empty"},
		{"syntax", "migration: m1\nsources: [\n", 2, "", "not valid YAML"},
		{"two documents", base + "---\nmigration: m2\n", 14, "", "one YAML document"},
		{"not a mapping", "- a\n- b\n", 1, "", "must be a mapping"},
		{"merge key", edit(nil, "copy:\n  <<: {concurrency: 2}\n"), 14, "copy", "merge keys"},

		// Unknown keys, duplicates, types.
		{"unknown top key", edit(nil, "sources2: []\n"), 13, "sources2", "unknown key"},
		{"unknown key suggestion", edit(nil, "copy:\n  concurency: 4\n"), 14, "copy.concurency", `did you mean "concurrency"`},
		{"unknown site key", edit(map[int]string{4: "    rol: primary"}, ""), 4, "sources[0].rol", "unknown key"},
		{"unknown stage key", edit(nil, stages+"    - {name: x, sites: [a], smaple: 1%}\n"), 15, "delete.stages[0].smaple", "unknown key"},
		{"duplicate key", edit(nil, "migration: m2\n"), 13, "migration", "duplicate key (first at line 1)"},
		{"wrong type string", edit(map[int]string{1: "migration: {a: b}"}, ""), 1, "migration", "must be a string"},
		{"wrong type bool", edit(nil, "verify: {reread: yes}\n"), 13, "verify.reread", "true or false"},
		{"wrong type int", edit(nil, "copy: {concurrency: '8'}\n"), 13, "copy.concurrency", "whole number"},
		{"wrong type list", edit(map[int]string{10: "  url: [file:///srv/t]"}, ""), 10, "target.url", "must be a string"},
		{"section not mapping", edit(nil, "copy: 5\n"), 13, "copy", "must be a mapping"},
		{"sources not list", edit(map[int]string{2: "sources: a", 3: "", 4: "", 5: "", 6: "", 7: "", 8: ""}, ""), 2, "sources", "must be a list"},

		// Required.
		{"missing migration", edit(map[int]string{1: ""}, ""), 1, "migration", "missing required key"},
		{"missing sources", "migration: m1\ntarget: {url: file:///t}\nrecords: {user: '(?P<user>.)'}\n", 1, "sources", "missing required key"},
		{"empty sources", edit(map[int]string{2: "sources: []", 3: "", 4: "", 5: "", 6: "", 7: "", 8: ""}, ""), 2, "sources", "at least one"},
		{"missing name", edit(map[int]string{3: "  - role: primary", 4: ""}, ""), 3, "sources[0].name", "missing required key"},
		{"missing role", edit(map[int]string{4: ""}, ""), 3, "sources[0].role", "missing required key"},
		{"missing url", edit(map[int]string{8: ""}, ""), 6, "sources[1].url", "missing required key"},
		{"empty url", edit(map[int]string{8: "    url: ''"}, ""), 8, "sources[1].url", "must not be empty"},
		{"null url", edit(map[int]string{8: "    url:"}, ""), 8, "sources[1].url", "must not be empty"},
		{"missing target url", edit(map[int]string{10: "  region: x"}, ""), 10, "target.url", "missing required key"},
		{"missing target", edit(map[int]string{9: "", 10: ""}, ""), 1, "target", "missing required key"},
		{"missing records.user", edit(map[int]string{12: "  conflicts: fail"}, ""), 12, "records.user", "missing required key"},

		// Values.
		{"bad migration id", edit(map[int]string{1: "migration: 'us users'"}, ""), 1, "migration", "letters, digits"},
		{"bad role", edit(map[int]string{4: "    role: primry"}, ""), 4, "sources[0].role", "primary or backup"},
		{"bad site name", edit(map[int]string{3: "  - name: 'a b'"}, ""), 3, "sources[0].name", "letters, digits"},
		{"duplicate site", edit(map[int]string{6: "  - name: a"}, ""), 6, "sources[1].name", "duplicate site name"},
		{"no user group", edit(map[int]string{12: "  user: '^([^/]+)/'"}, ""), 12, "records.user", "named group `user`"},
		{"bad regex", edit(map[int]string{12: "  user: '^(?P<user>[^/]+/'"}, ""), 12, "records.user", "not a valid regular expression"},
		{"bad glob", edit(nil, "  include: ['users/[a-']\n"), 13, "records.include[0]", "not a valid glob"},
		{"absolute glob", edit(nil, "  exclude: ['tmp/**', '/x/**']\n"), 13, "records.exclude[1]", "leading /"},
		{"empty include", edit(nil, "  include: []\n"), 13, "records.include", "matches nothing"},
		{"bad conflicts", edit(nil, "  conflicts: newest\n"), 13, "records.conflicts", "fail, prefer-primary or keep-both"},
		{"prefer-primary without primary", edit(map[int]string{4: "    role: backup"}, "  conflicts: prefer-primary\n"), 13, "records.conflicts", "needs a source with role: primary"},
		{"concurrency too high", edit(nil, "copy: {concurrency: 2000}\n"), 13, "copy.concurrency", "from 1 to 1024"},
		{"concurrency zero", edit(nil, "copy: {concurrency: 0}\n"), 13, "copy.concurrency", "from 1 to 1024"},
		{"verify concurrency", edit(nil, "verify: {concurrency: -1}\n"), 13, "verify.concurrency", "from 1 to 1024"},
		{"retries", edit(nil, "copy: {retries: 1000}\n"), 13, "copy.retries", "from 0 to 100"},
		{"part size small", edit(nil, "copy: {part_size: 1MiB}\n"), 13, "copy.part_size", "5MiB to 5GiB"},
		{"part size unit", edit(nil, "copy: {part_size: 64 parsecs}\n"), 13, "copy.part_size", "size"},
		{"site part size", edit(map[int]string{5: "    url: file:///srv/a\n    part_size: 6GiB"}, ""), 6, "sources[0].part_size", "5MiB to 5GiB"},
		{"bad mode", edit(nil, "delete: {mode: shred}\n"), 13, "delete.mode", "soft or hard"},
		{"bad grace", edit(nil, "delete: {grace: 3 days}\n"), 13, "delete.grace", "duration"},
		{"negative grace", edit(nil, "delete: {grace: -1h}\n"), 13, "delete.grace", "negative"},
		{"grace number", edit(nil, "delete: {grace: 72}\n"), 13, "delete.grace", "duration"},
		{"max_delete share", edit(nil, "delete: {max_delete: 150%}\n"), 13, "delete.max_delete", "at most 100%"},
		{"max_delete zero", edit(nil, "delete: {max_delete: 0}\n"), 13, "delete.max_delete", "at least 1"},
		{"max_delete junk", edit(nil, "delete: {max_delete: lots}\n"), 13, "delete.max_delete", "count"},
		{"sample zero", edit(nil, stages+"    - {name: x, sites: [a], sample: 0%}\n"), 15, "delete.stages[0].sample", "more than 0%"},
		{"sample over", edit(nil, stages+"    - {name: x, sites: [a], sample: 101%}\n"), 15, "delete.stages[0].sample", "at most 100%"},
		{"sample bare number", edit(nil, stages+"    - {name: x, sites: [a], sample: 1}\n"), 15, "delete.stages[0].sample", "percentage"},
		{"sample decimals", edit(nil, stages+"    - {name: x, sites: [a], sample: 0.00001%}\n"), 15, "delete.stages[0].sample", "percentage"},
		{"stage unknown site", edit(nil, stages+"    - {name: x, sites: [a]}\n    - {name: y, sites: [b, c]}\n"), 16, "delete.stages[1].sites[1]", "no source site has this name"},
		{"stage duplicate name", edit(nil, stages+"    - {name: x, sites: [a]}\n    - {name: x, sites: [b]}\n"), 16, "delete.stages[1].name", "duplicate stage name"},
		{"stage no sites", edit(nil, stages+"    - {name: x, sites: []}\n"), 15, "delete.stages[0].sites", "at least one site"},
		{"stage missing sites", edit(nil, stages+"    - {name: x}\n"), 15, "delete.stages[0].sites", "missing required key"},
		{"stage site twice", edit(nil, stages+"    - {name: x, sites: [a, a]}\n"), 15, "delete.stages[0].sites[1]", "twice"},
		{"stage bad mode", edit(nil, stages+"    - {name: x, sites: [a], mode: maybe}\n"), 15, "delete.stages[0].mode", "soft or hard"},
		{"stage max_delete", edit(nil, stages+"    - {name: x, sites: [a], max_delete: 0%}\n"), 15, "delete.stages[0].max_delete", "more than 0%"},
		{"stages not list", edit(nil, "delete: {stages: canary}\n"), 13, "delete.stages", "must be a list"},
		{"state scheme", edit(nil, "state: mysql://db/ferry\n"), 13, "state", "postgres://"},
		{"state keyword dsn", edit(nil, "state: host=db dbname=ferry\n"), 13, "state", "postgres://"},

		// URLs.
		{"bad scheme", edit(map[int]string{5: "    url: ftp://srv/a"}, ""), 5, "sources[0].url", "scheme must be s3://, oci://, gs://, azblob:// or file://"},
		{"no scheme", edit(map[int]string{5: "    url: /srv/a"}, ""), 5, "sources[0].url", "needs a scheme"},
		{"s3 no bucket", edit(map[int]string{5: "    url: s3:///users/"}, ""), 5, "sources[0].url", "needs a bucket"},
		{"s3 port", edit(map[int]string{5: "    url: s3://bucket:9000/users/"}, ""), 5, "sources[0].url", "endpoint"},
		{"s3 dotdot", edit(map[int]string{5: "    url: s3://bucket/users/../x/"}, ""), 5, "sources[0].url", ".. segments"},
		{"s3 query", edit(map[int]string{5: "    url: s3://bucket/users/?versionId=1"}, ""), 5, "sources[0].url", "query"},
		{"oci no bucket", edit(map[int]string{5: "    url: oci://namespace/"}, ""), 5, "sources[0].url", "needs a bucket"},
		{"oci no namespace", edit(map[int]string{5: "    url: oci:///bucket/x"}, ""), 5, "sources[0].url", "namespace"},
		{"file host", edit(map[int]string{5: "    url: file://srv/a"}, ""), 5, "sources[0].url", "a host is not allowed"},
		{"file opaque", edit(map[int]string{5: "    url: file:data/a"}, ""), 5, "sources[0].url", "file://./dir"},
		{"file root", edit(map[int]string{5: "    url: file:///"}, ""), 5, "sources[0].url", "root"},
		{"userinfo without password", edit(map[int]string{5: "    url: s3://admin@bucket/x/"}, ""), 5, "sources[0].url", "user info"},
		{"endpoint scheme", edit(map[int]string{5: "    url: s3://bucket/a/\n    endpoint: ftp://host"}, ""), 6, "sources[0].endpoint", "http:// or https://"},
		{"endpoint on file", edit(map[int]string{5: "    url: file:///srv/a\n    endpoint: https://host"}, ""), 6, "sources[0].endpoint", "file:// store"},
		{"path_style on oci", edit(map[int]string{10: "  url: oci://ns/b/x/\n  path_style: true"}, ""), 11, "target.path_style", "only to s3"},
		{"bad region", edit(map[int]string{5: "    url: s3://bucket/a/\n    region: us east"}, ""), 6, "sources[0].region", "region id"},
		{"target equals source", edit(map[int]string{10: "  url: file:///srv/a"}, ""), 10, "target.url", "overlaps sources[0] (a)"},
		{"target inside source", edit(map[int]string{10: "  url: file:///srv/b/migrated"}, ""), 10, "target.url", "overlaps sources[1] (b)"},
		{"target around source", edit(map[int]string{10: "  url: file:///srv"}, ""), 10, "target.url", "overlaps"},
		{"s3 target inside source", edit(map[int]string{5: "    url: s3://legacy/users/", 10: "  url: s3://legacy/users/migrated/"}, ""), 10, "target.url", "overlaps sources[0]"},
		{"s3 prefix without slash", edit(map[int]string{5: "    url: s3://legacy/users", 10: "  url: s3://legacy/users-new/"}, ""), 10, "target.url", "trailing /"},
		{"relative file overlap", edit(map[int]string{5: "    url: file://./data", 10: "  url: file:///etc/ferry/data/target"}, ""), 10, "target.url", "overlaps sources[0]"},
		{"sources overlap", edit(map[int]string{8: "    url: file:///srv/a/b"}, ""), 8, "sources[1].url", "overlaps sources[0] (a)"},

		// Residency.
		{"region outside residency", edit(map[int]string{10: "  url: oci://ns/bucket/\n  region: eu-frankfurt-1\n  residency: [us-ashburn-1, us-phoenix-1]"}, ""), 11, "target.region", "outside residency"},
		{"residency without region", edit(map[int]string{10: "  url: oci://ns/bucket/\n  residency: [us-ashburn-1]"}, ""), 10, "target.region", "region must be named"},
		{"empty residency", edit(map[int]string{10: "  url: oci://ns/bucket/\n  region: us-ashburn-1\n  residency: []"}, ""), 12, "target.residency", "at least one region"},

		// Credentials (names only).
		{"credentials unknown key", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {profile_name: x}"}, ""), 11, "target.credentials.profile_name", "credentials hold only names"},
		{"credentials wrong scheme", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {oci_profile: DEFAULT}"}, ""), 11, "target.credentials.oci_profile", "does not apply to a s3:// store"},
		{"credentials on file", edit(map[int]string{10: "  url: file:///srv/t\n  credentials: {profile: x}"}, ""), 11, "target.credentials.profile", "takes no credentials"},
		{"env name", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {access_key_env: 'MY KEY', secret_key_env: S}"}, ""), 11, "target.credentials.access_key_env", "name of an environment variable"},
		{"access without secret", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {access_key_env: K}"}, ""), 11, "target.credentials.secret_key_env", "needs secret_key_env"},
		{"profile and env", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {profile: p, access_key_env: K, secret_key_env: S}"}, ""), 11, "target.credentials.profile", "not both"},
		{"bad auth", edit(map[int]string{10: "  url: oci://ns/b/\n  credentials: {auth: password}"}, ""), 11, "target.credentials.auth", "instance_principal"},
		{"instance principal with profile", edit(map[int]string{10: "  url: oci://ns/b/\n  credentials: {auth: instance_principal, oci_profile: X}"}, ""), 11, "target.credentials.auth", "takes no oci_profile"},
		// Google Cloud Storage and Azure Blob.
		{"gs without bucket", edit(map[int]string{5: "    url: gs:///users/"}, ""), 5, "sources[0].url", "gs://bucket/prefix/"},
		{"gs upper-case bucket", edit(map[int]string{5: "    url: gs://Legacy/users/"}, ""), 5, "sources[0].url", "lower-case"},
		{"azblob without container", edit(map[int]string{5: "    url: azblob://acct/"}, ""), 5, "sources[0].url", "needs a container"},
		{"azblob bad account", edit(map[int]string{5: "    url: azblob://My_Account/c/x/"}, ""), 5, "sources[0].url", "storage account name"},
		{"azblob bad container", edit(map[int]string{5: "    url: azblob://acct/Users/x/"}, ""), 5, "sources[0].url", "container name"},
		{"gs target inside gs source", edit(map[int]string{5: "    url: gs://legacy/users/", 10: "  url: gs://legacy/users/migrated/"}, ""), 10, "target.url", "overlaps sources[0]"},
		{"azblob target inside source", edit(map[int]string{5: "    url: azblob://acct/con/users/", 10: "  url: azblob://acct/con/users/new/"}, ""), 10, "target.url", "overlaps sources[0]"},
		{"s3 credentials on gs", edit(map[int]string{10: "  url: gs://b-t/t/\n  credentials: {profile: x}"}, ""), 11, "target.credentials.profile", "use gcp_credentials_file, auth"},
		{"gs auth not none", edit(map[int]string{10: "  url: gs://b-t/t/\n  credentials: {auth: instance_principal}"}, ""), 11, "target.credentials.auth", "must be none"},
		{"gs auth none with file", edit(map[int]string{10: "  url: gs://b-t/t/\n  credentials: {auth: none, gcp_credentials_file: sa.json}"}, ""), 11, "target.credentials.auth", "no gcp_credentials_file"},
		{"azblob key and sas", edit(map[int]string{10: "  url: azblob://acct/con/t/\n  credentials: {account_key_env: K, sas_token_env: S}"}, ""), 11, "target.credentials.sas_token_env", "not both"},
		{"azblob key env is a name", edit(map[int]string{10: "  url: azblob://acct/con/t/\n  credentials: {account_key_env: 'a key'}"}, ""), 11, "target.credentials.account_key_env", "name of an environment variable"},
		{"kms_key_id on gs", edit(map[int]string{10: "  url: gs://b-t/t/\n  kms_key_id: k1"}, ""), 11, "target.kms_key_id", "kms_key_name"},
		{"kms_key_name on s3", edit(map[int]string{10: "  url: s3://b/t/\n  kms_key_name: projects/p/locations/l/keyRings/r/cryptoKeys/k"}, ""), 11, "target.kms_key_name", "only a gs:// target"},
		{"kms_key_name malformed", edit(map[int]string{10: "  url: gs://b-t/t/\n  kms_key_name: my-key"}, ""), 11, "target.kms_key_name", "projects/P/locations/L"},
		{"encryption_scope on gs", edit(map[int]string{10: "  url: gs://b-t/t/\n  encryption_scope: scope1"}, ""), 11, "target.encryption_scope", "only an azblob:// target"},
		{"encryption_scope malformed", edit(map[int]string{10: "  url: azblob://acct/con/t/\n  encryption_scope: 'a b'"}, ""), 11, "target.encryption_scope", "3 to 63 letters"},
		{"path_style on gs", edit(map[int]string{10: "  url: gs://b-t/x/\n  path_style: true"}, ""), 11, "target.path_style", "only to s3"},
		{"credentials not mapping", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: va-migrator"}, ""), 11, "target.credentials", "mapping of names"},
		{"crypto_erase bad date", edit(map[int]string{5: "    url: file:///srv/a\n    crypto_erase: {key_id: k1, deletion_date: 31/12/2026}"}, ""), 6, "sources[0].crypto_erase.deletion_date", "must be a date (2026-12-31)"},
		{"crypto_erase empty key_id", edit(map[int]string{5: "    url: file:///srv/a\n    crypto_erase: {key_id: '', deletion_date: 2026-12-31}"}, ""), 6, "sources[0].crypto_erase.key_id", "must not be empty"},
		{"crypto_erase missing key_id", edit(map[int]string{5: "    url: file:///srv/a\n    crypto_erase: {deletion_date: 2026-12-31}"}, ""), 6, "sources[0].crypto_erase.key_id", "missing required key"},
		{"crypto_erase missing date", edit(map[int]string{5: "    url: file:///srv/a\n    crypto_erase: {key_id: k1}"}, ""), 6, "sources[0].crypto_erase.deletion_date", "missing required key"},
		{"crypto_erase unknown key", edit(map[int]string{8: "    url: file:///srv/b\n    crypto_erase: {key_id: k1, deletion_date: 2026-12-31, when: now}"}, ""), 9, "sources[1].crypto_erase.when", "unknown key"},
		{"crypto_erase not mapping", edit(map[int]string{5: "    url: file:///srv/a\n    crypto_erase: k1"}, ""), 6, "sources[0].crypto_erase", "mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), specFile)
			if err == nil {
				t.Fatalf("no error for\n%s", tc.doc)
			}
			for _, e := range all(err) {
				if e.File != specFile {
					t.Errorf("File = %q", e.File)
				}
				if e.Line == tc.line && e.Key == tc.key && strings.Contains(e.Msg, tc.msg) {
					prefix := specFile + ":"
					if tc.line > 0 {
						prefix += fmt.Sprint(tc.line) + ":"
					}
					if !strings.HasPrefix(e.Error(), prefix) || (tc.key != "" && !strings.Contains(e.Error(), " "+tc.key+": ")) {
						t.Errorf("Error() = %q", e.Error())
					}
					return
				}
			}
			t.Errorf("want line %d key %q msg containing %q; got:\n%v", tc.line, tc.key, tc.msg, err)
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	doc := `migration: m1
bogus: 1
sources:
  - name: a
    role: primry
    url: ftp://x
  - name: a
    role: backup
    url: file:///srv/b
    colour: blue
target:
  url: file:///srv/b/t
records:
  user: '^(.*)$'
copy: {concurrency: 0}
delete:
  stages:
    - {name: s, sites: [nowhere]}
`
	_, err := Parse([]byte(doc), specFile)
	want := []struct {
		line int
		key  string
	}{
		{2, "bogus"}, {5, "sources[0].role"}, {6, "sources[0].url"}, {7, "sources[1].name"},
		{10, "sources[1].colour"}, {12, "target.url"}, {14, "records.user"}, {15, "copy.concurrency"},
		{18, "delete.stages[0].sites[0]"},
	}
	got := all(err)
	for _, w := range want {
		found := false
		for _, e := range got {
			if e.Line == w.line && e.Key == w.key {
				found = true
			}
		}
		if !found {
			t.Errorf("missing error at line %d key %s", w.line, w.key)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Line < got[i-1].Line {
			t.Error("errors not sorted by line")
		}
	}
}

// Secrets are refused, with the line and key, and never echoed (DESIGN.md I8).
func TestSecretsRefusedNotEchoed(t *testing.T) {
	const (
		keyID  = "AKIAQWERTYUIOPASDFGH"
		secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
		random = "Xk9fQ2LmZpR7vT4wB8nJcH3sY6uE1aD5gK0oN2iM"
		pass   = "hunter2hunter2"
	)
	for _, tc := range []struct {
		name   string
		doc    string
		line   int
		key    string
		secret string
	}{
		{"secret_key in credentials", edit(map[int]string{10: "  url: s3://b/t/\n  credentials:\n    access_key_env: K\n    secret_key: " + secret}, ""), 13, "target.credentials.secret_key", secret},
		{"aws_secret_access_key in credentials", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {aws_secret_access_key: '" + secret + "'}"}, ""), 11, "target.credentials.aws_secret_access_key", secret},
		{"password in credentials", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {password: " + pass + "}"}, ""), 11, "target.credentials.password", pass},
		{"access key id as env name", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {access_key_env: " + keyID + ", secret_key_env: S}"}, ""), 11, "target.credentials.access_key_env", keyID},
		{"secret as env name", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {access_key_env: K, secret_key_env: '" + secret + "'}"}, ""), 11, "target.credentials.secret_key_env", secret},
		{"random secret as profile", edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {profile: " + random + "}"}, ""), 11, "target.credentials.profile", random},
		{"key id under an unknown key", edit(nil, "aws_access_key_id: "+keyID+"\n"), 13, "aws_access_key_id", keyID},
		{"key id in a region", edit(map[int]string{5: "    url: s3://b/a/\n    region: " + keyID}, ""), 6, "sources[0].region", keyID},
		{"key id in a comment", edit(map[int]string{1: "migration: m1   # old key " + keyID}, ""), 1, "", keyID},
		{"password in URL", edit(map[int]string{5: "    url: s3://admin:" + pass + "@bucket/x/"}, ""), 5, "sources[0].url", pass},
		{"password in endpoint", edit(map[int]string{5: "    url: s3://bucket/x/\n    endpoint: https://admin:" + pass + "@minio:9000"}, ""), 6, "sources[0].endpoint", pass},
		{"password in state", edit(nil, "state: postgres://ferry:"+pass+"@db/ferry\n"), 13, "state", pass},
		{"password parameter in state", edit(nil, "state: postgres://ferry@db/ferry?password="+pass+"\n"), 13, "state", pass},
		{"PEM as signing key", edit(nil, "report:\n  signing_key: |\n    -----BEGIN PRIVATE KEY-----\n    MC4CAQAwBQYDK2VwBCIEIPv9Yk0xq3a\n    -----END PRIVATE KEY-----\n"), 15, "report.signing_key", "MC4CAQAwBQYDK2VwBCIEIPv9Yk0xq3a"},
		{"presigned endpoint", edit(map[int]string{5: "    url: s3://bucket/x/\n    endpoint: https://minio:9000/?X-Amz-Signature=" + random}, ""), 6, "sources[0].endpoint", random},
		{"broken YAML still scanned", "migration: [\ntoken: " + keyID + "\n", 2, "", keyID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), specFile)
			if err == nil {
				t.Fatalf("no error for\n%s", tc.doc)
			}
			text := err.Error()
			for i := 0; i+8 <= len(tc.secret); i++ {
				if strings.Contains(text, tc.secret[i:i+8]) {
					t.Fatalf("error echoes the secret (%q):\n%s", tc.secret[i:i+8], text)
				}
			}
			for _, e := range all(err) {
				if e.Line == tc.line && e.Key == tc.key && strings.Contains(e.Msg, "secret") {
					return
				}
			}
			t.Errorf("want a secret error at line %d key %q; got:\n%s", tc.line, tc.key, text)
		})
	}
}

func TestNamesAreNotSecrets(t *testing.T) {
	doc := edit(map[int]string{10: "  url: s3://b/t/\n  credentials:\n    access_key_env: AWS_SECRET_ACCESS_KEY_FOR_MIGRATION_2022\n    secret_key_env: MyCompanyProductionMigrationRole2022"}, "")
	mustParse(t, doc)
	mustParse(t, edit(map[int]string{10: "  url: s3://b/t/\n  credentials: {profile: MyCompanyProductionMigrationRole2022}"}, ""))
}

func TestDigestStable(t *testing.T) {
	full := mustLoad(t, "testdata/full.yaml")
	// The same spec reordered, restyled, uncommented, quoted, with defaults written
	// out or left out, tuning changed, and read from elsewhere.
	same := `report: {signer: Someone Else}
delete:
  stages:
    - name: canary
      sites: [singapore]
      sample: "1.0%"
      mode: soft
    - {sites: [archive, singapore], name: backups, max_delete: 100%}
    - {name: primary, sites: [virginia]}
  grace: 3d
  mode: "soft"
verify: {concurrency: 3}
copy: {concurrency: 7, retries: 9, part_size: 128MiB}
records:
  conflicts: fail
  user: "^(?P<user>[^/]+)/"
target:
  kms_key_id: ocid1.key.oc1..example
  residency: [us-phoenix-1, us-ashburn-1]
  region: us-ashburn-1
  url: "oci://mynamespace/us-users/users/"
  credentials: {auth: instance_principal}
sources:
  - {name: virginia, role: primary, url: 's3://legacy-users/users/', endpoint: 'https://S3.va.example.internal/', region: us-east-1, path_style: true}
  - {name: singapore, role: backup, url: s3://backup-users/2022-06/users/, credentials: {profile: sg}}
  - {name: archive, role: backup, url: file:///mnt/archive/users/}
state: postgres://ferry@db/ferry
migration: 'us-users-2022'
`
	s, err := Parse([]byte(same), "/somewhere/else/ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Digest() != full.Digest() {
		t.Errorf("digest changed by formatting or operational keys")
	}
	if full.Digest() != mustLoad(t, "testdata/full.yaml").Digest() {
		t.Error("digest not deterministic")
	}
	// Relative file URLs: the digest does not depend on the checkout folder.
	a, _ := Parse([]byte(edit(map[int]string{5: "    url: file://./a"}, "")), "/x/ferry.yaml")
	b, _ := Parse([]byte(edit(map[int]string{5: "    url: file://./a/"}, "")), "/y/ferry.yaml")
	if a.Digest() != b.Digest() {
		t.Error("relative file URL digest depends on the folder")
	}
}

func TestDigestSensitive(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	orig := string(data)
	ref := mustParse(t, orig).Digest()
	seen := map[string]string{ref: "original"}
	for _, tc := range []struct{ old, new string }{
		{"migration: us-users-2022", "migration: us-users-2023"},
		{"virginia", "virginia2"},
		{"role: primary", "role: backup"},
		{"url: s3://legacy-users/users/", "url: s3://legacy-users/users2/"},
		{"https://s3.va.example.internal", "https://s3.va2.example.internal"},
		{"region: us-east-1", "region: us-east-2"},
		{"url: file:///mnt/archive/users", "url: file:///mnt/archive/users\n    quarantine: .q"},
		{"url: oci://mynamespace/us-users/users/", "url: oci://mynamespace/us-users/users2/"},
		{"region: us-ashburn-1", "region: us-phoenix-1"},
		{"residency: [us-ashburn-1, us-phoenix-1]", "residency: [us-ashburn-1]"},
		{"kms_key_id: ocid1.key.oc1..example", "kms_key_id: ocid1.key.oc1..other"},
		{`user: '^(?P<user>[^/]+)/'`, `user: '^(?P<user>[^/]+)'`},
		{"include: ['**']", "include: ['users/**']"},
		{"exclude: []", "exclude: ['**/*.tmp']"},
		{"conflicts: fail", "conflicts: keep-both"},
		{"reread: false", "reread: true"},
		{"mode: soft", "mode: hard"},
		{"grace: 72h", "grace: 73h"},
		{"max_delete: 100%", "max_delete: 99%"},
		{"sample: 1%", "sample: 2%"},
		{"{name: canary, sites: [singapore], sample: 1%}", "{name: canary, sites: [singapore], sample: 1%, mode: hard}"},
		{"{name: backups, sites: [singapore, archive]}", "{name: backups, sites: [singapore, archive], max_delete: 10}"},
		{"{name: backups, sites: [singapore, archive]}", "{name: backups, sites: [archive]}"},
		{"{name: backups, sites: [singapore, archive]}", "{name: backup, sites: [singapore, archive]}"},
		{"    - {name: backups, sites: [singapore, archive]}\n    - {name: primary, sites: [virginia]}", "    - {name: primary, sites: [virginia]}\n    - {name: backups, sites: [singapore, archive]}"},
	} {
		if !strings.Contains(orig, tc.old) {
			t.Fatalf("full.yaml lacks %q", tc.old)
		}
		doc := strings.ReplaceAll(orig, tc.old, tc.new)
		d := mustParse(t, doc).Digest()
		if prev, dup := seen[d]; dup {
			t.Errorf("%q -> %q: digest same as %s", tc.old, tc.new, prev)
		}
		seen[d] = tc.new
	}
}

func TestMatchAndUser(t *testing.T) {
	s := mustParse(t, edit(nil, "  include: ['users/**', 'legacy/*.dat']\n  exclude: ['**/*.tmp', 'users/system/**']\n"))
	s.Records.User = mustParse(t, edit(map[int]string{12: `  user: '^(?:users|legacy)/(?P<user>[0-9]+)[/.]'`}, "")).Records.User
	for _, tc := range []struct {
		key   string
		match bool
		user  string
	}{
		{"users/42/photo.jpg", true, "42"},
		{"users/42/a/b/c", true, "42"},
		{"users/42/cache.tmp", false, "42"},
		{"users/system/x", false, ""},
		{"legacy/7.dat", true, "7"},
		{"legacy/sub/7.dat", false, ""},
		{"other/1/x", false, ""},
		{"users/", true, ""},
		{"users/bob/x", true, ""},
	} {
		if got := s.Match(tc.key); got != tc.match {
			t.Errorf("Match(%q) = %v", tc.key, got)
		}
		u, ok := s.User(tc.key)
		if u != tc.user || ok != (tc.user != "") {
			t.Errorf("User(%q) = %q, %v", tc.key, u, ok)
		}
	}
	def := mustParse(t, base)
	for _, k := range []string{"a", "a/b/c", "é/ñ", "a b/ c", ".hidden/x"} {
		if !def.Match(k) {
			t.Errorf("default include does not match %q", k)
		}
	}
	if u, ok := def.User("alice/photos/1.jpg"); u != "alice" || !ok {
		t.Errorf("User = %q, %v", u, ok)
	}
	if _, ok := def.User("no-slash"); ok {
		t.Error("User matched a key without the pattern")
	}
	opt := mustParse(t, edit(map[int]string{12: `  user: '^(?:(?P<user>[a-z]+)/)?'`}, ""))
	if _, ok := opt.User("123"); ok {
		t.Error("User: a group that did not take part must be false")
	}
}

func TestInSample(t *testing.T) {
	// Pinned: the rule is SHA-256(key)[:8] big-endian < fraction * 2^64. These must
	// never change, or samples would differ between ferry versions.
	pinned := []struct {
		key  string
		half bool
		tent bool
	}{
		{"a", false, false}, {"b", true, false}, {"c", true, false}, {"d", true, true},
		{"alice/photo.jpg", false, false}, {"bob/doc.pdf", true, false},
	}
	for _, p := range pinned {
		if InSample(p.key, 0.5) != p.half || InSample(p.key, 0.1) != p.tent {
			t.Errorf("InSample(%q) changed", p.key)
		}
	}
	if InSample("x", 0) || InSample("x", -1) || !InSample("x", 1) || !InSample("x", 2) {
		t.Error("bounds")
	}
	nan := 0.0
	if InSample("x", nan/nan) {
		t.Error("NaN selects")
	}
	const n = 20000
	for _, f := range []float64{0.01, 0.1, 0.5} {
		c := 0
		for i := range n {
			k := fmt.Sprintf("user-%d/object-%d.bin", i%97, i)
			in := InSample(k, f)
			if in != InSample(k, f) {
				t.Fatal("not deterministic")
			}
			if in {
				c++
				if f < 0.5 && !InSample(k, 0.5) {
					t.Fatal("samples do not nest")
				}
			}
		}
		got := float64(c) / n
		if got < f*0.8 || got > f*1.2 {
			t.Errorf("fraction %v: selected %v", f, got)
		}
	}
	st := Stage{Sample: 10000}
	if st.SampleFraction() != 0.01 || st.InSample("d") != InSample("d", 0.01) {
		t.Error("Stage sample helpers")
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"64MiB", 64 << 20, false}, {"64mib", 64 << 20, false}, {"64M", 64 << 20, false},
		{"100MB", 100_000_000, false}, {"5242880", 5 << 20, false}, {"1.5GiB", 3 << 29, false},
		{"5 MiB", 5 << 20, false}, {"10PB", 0, true}, {"-1MiB", 0, true}, {"MiB", 0, true},
		{"99999999999999999999999TiB", 0, true},
	} {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"72h", 72 * time.Hour, false}, {"3d", 72 * time.Hour, false}, {"1d12h", 36 * time.Hour, false},
		{"90m", 90 * time.Minute, false}, {"0", 0, false}, {"0d", 0, false}, {"-1h", 0, true},
		{"1d-1h", 0, true}, {"3 days", 0, true}, {"d", 0, true}, {"", 0, true}, {"99999999d", 0, true},
	} {
		got, err := parseDuration(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want Share
		bad  bool
	}{
		{"1%", 10000, false}, {"100%", FullShare, false}, {"12.5%", 125000, false}, {"0.0001%", 1, false},
		{"0%", 0, true}, {"100.5%", 0, true}, {"1", 0, true}, {"%", 0, true}, {"0.00001%", 0, true},
	} {
		got, err := parseShare(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseShare(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, s := range []Share{1, 10000, 125000, FullShare, 5000} {
		back, err := parseShare(s.String())
		if err != nil || back != s {
			t.Errorf("Share %d -> %q -> %d, %v", s, s.String(), back, err)
		}
	}
	for _, tc := range []struct {
		md   string
		n    int64
		want int64
	}{
		{"100%", 12345, 12345}, {"10%", 15, 1}, {"10%", 100, 10}, {"0.5%", 1000, 5}, {"1%", 50, 0},
		{"5000", 100, 100}, {"5000", 1_000_000, 5000}, {"100%", 0, 0}, {"50%", 1 << 62, 1 << 61},
		{"99.9999%", 1 << 62, 4611681406741369476}, // floor(2^62 × 999999 / 10^6)
	} {
		m, err := parseMaxDelete(tc.md)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Limit(tc.n); got != tc.want {
			t.Errorf("%s.Limit(%d) = %d, want %d", tc.md, tc.n, got, tc.want)
		}
		if m.String() != tc.md {
			t.Errorf("String = %q", m.String())
		}
	}
	if formatSize(64<<20) != "64MiB" || formatSize(1000) != "1000B" {
		t.Error("formatSize")
	}
}

func TestValidateMigrationID(t *testing.T) {
	for _, ok := range []string{"m", "us-users-2022", "A.b_c-1"} {
		if ValidateMigrationID(ok) != nil {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "-x", "a b", "a/b", strings.Repeat("a", 129)} {
		if ValidateMigrationID(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTemplate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(path, Template("us-users-2022"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := mustLoad(t, path)
	if s.Migration != "us-users-2022" || len(s.Sources) != 3 || len(s.Delete.Stages) != 3 {
		t.Fatalf("template spec = %+v", s)
	}
	for i, name := range []string{"virginia", "singapore", "archive"} {
		want := "file://" + filepath.ToSlash(filepath.Join(dir, "data", name))
		if s.Sources[i].Name != name || s.Sources[i].URL != want {
			t.Errorf("sources[%d] = %s %s, want %s", i, s.Sources[i].Name, s.Sources[i].URL, want)
		}
	}
	if s.Target.URL != "file://"+filepath.ToSlash(filepath.Join(dir, "data", "target")) {
		t.Errorf("target = %s", s.Target.URL)
	}
	if s.StatePath() != filepath.Join(dir, "ferry.db") || s.Report.SigningKey != filepath.Join(dir, "keys", "ferry.key") {
		t.Errorf("state %s key %s", s.StatePath(), s.Report.SigningKey)
	}
	if !strings.Contains(string(Template("")), `migration: "`+DefaultMigrationID+`"`) {
		t.Error("default migration id")
	}
	if _, err := Parse(Template("bad id"), path); err == nil || !strings.Contains(err.Error(), "migration") {
		t.Errorf("bad id: %v", err)
	}

	// The commented examples are valid too: uncomment them (s3 for virginia, oci
	// for the target) and the spec still parses, with the values they show.
	var out []string
	for _, l := range strings.Split(string(Template("x")), "\n") {
		trimmed := strings.TrimLeft(l, " ")
		indent := l[:len(l)-len(trimmed)]
		switch {
		case strings.Contains(l, "url: file://./data/virginia"):
			l = indent + "url: s3://legacy-users/users/"
		case strings.Contains(l, "url: file://./data/target"):
			continue
		case strings.HasPrefix(trimmed, "# ") && regexp.MustCompile(`^# [a-z_]+: `).MatchString(trimmed):
			l = indent + strings.TrimPrefix(trimmed, "# ")
		}
		out = append(out, l)
	}
	ex, err := Parse([]byte(strings.Join(out, "\n")), path)
	if err != nil {
		t.Fatalf("template examples: %v\n%s", err, strings.Join(out, "\n"))
	}
	va := ex.Sources[0]
	if va.Endpoint == "" || va.Region == "" || !va.PathStyle || !va.ChecksumWhenRequired || va.Credentials.Profile == "" ||
		va.Quarantine == "" || ex.Target.Region != "us-ashburn-1" || len(ex.Target.Residency) != 2 || ex.Target.KMSKeyID == "" ||
		ex.Target.Credentials.OCIProfile != "DEFAULT" || ex.Report.Signer == "" || !strings.HasPrefix(ex.Target.URL, "oci://") {
		t.Errorf("template examples not all uncommented: %+v", ex)
	}
}

func TestAliasesAndNulls(t *testing.T) {
	doc := `migration: m1
sources:
  - &site {name: a, role: primary, url: 's3://b/a/', credentials: &creds {profile: p}}
  - {name: b, role: backup, url: 's3://b/b/', credentials: *creds}
target: {url: 'file:///srv/t'}
records: {user: '(?P<user>.+)'}
copy:
verify: ~
delete: {stages: []}
`
	s := mustParse(t, doc)
	if s.Sources[1].Credentials.Profile != "p" || s.Copy.Concurrency != DefaultConcurrency || len(s.Delete.Stages) != 0 {
		t.Errorf("spec = %+v", s)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Template("fuzz"))
	f.Add([]byte(base))
	for _, name := range []string{"full.yaml", "minimal.yaml", "minio.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("migration: [\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("sources: [{credentials: {secret_key: AKIAQWERTYUIOPASDFGH}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "/fuzz/ferry.yaml")
		if err != nil {
			if len(all(err)) == 0 {
				t.Fatalf("error is not an *Error or Errors: %T", err)
			}
			_ = err.Error()
			return
		}
		d := s.Digest()
		if len(d) != 64 {
			t.Fatalf("digest %q", d)
		}
		s2, err := Parse(data, "/fuzz/ferry.yaml")
		if err != nil || s2.Digest() != d {
			t.Fatal("Parse is not deterministic")
		}
		_ = s.StatePath()
		for _, k := range []string{"", "a/b", "users/1/x"} {
			s.Match(k)
			s.User(k)
		}
		for i := range s.Sources {
			s.Sources[i].ProviderConfig(s.Migration)
		}
		s.Target.ProviderConfig(s.Migration)
	})
}

func TestYAMLErrorsDoNotEcho(t *testing.T) {
	const id = "AKIAQWERTYUIOPASDFGH"
	for _, doc := range []string{
		"migration: *" + id + "\n",
		"migration: !<" + id + "> x\n",
		"migration: !" + id + "!x y\n",
	} {
		_, err := Parse([]byte(doc), specFile)
		if err == nil {
			t.Fatalf("no error for %q", doc)
		}
		if strings.Contains(err.Error(), id[4:12]) {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
}

func TestApprovers(t *testing.T) {
	base := "migration: m\nsources: [{name: a, role: primary, url: file:///tmp/a}]\ntarget: {url: file:///tmp/t}\nrecords: {user: '^(?P<user>[^/]+)/'}\n"
	s, err := Parse([]byte(base+"report: {approvers: [{name: Legal, public_key: keys/legal.pub}]}\n"), "/srv/m/ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Report.Approvers) != 1 || s.Report.Approvers[0].Name != "Legal" || s.Report.Approvers[0].PublicKey != "/srv/m/keys/legal.pub" {
		t.Fatalf("approvers = %+v", s.Report.Approvers)
	}
	for _, bad := range []string{
		"report: {approvers: [{name: Legal}]}\n",
		"report: {approvers: [{public_key: k.pub}]}\n",
		"report: {approvers: {name: Legal}}\n",
		"report: {approvers: [{name: Legal, public_key: k.pub, key: x}]}\n",
		"report: {approvers: [{name: Legal, public_key: k.pub}, {name: Audit, public_key: ./k.pub}]}\n",
		"report: {approvers: [{name: Legal, public_key: k.pub}, {name: Legal, public_key: j.pub}]}\n",
	} {
		_, err := Parse([]byte(base+bad), "/srv/m/ferry.yaml")
		if err == nil || !strings.Contains(err.Error(), "report.approvers") {
			t.Errorf("%q: err %v, want one naming report.approvers", bad, err)
		}
	}
}

// TestCloudStores: gs:// and azblob:// sites and targets parse into the provider
// configs their providers expect, credentials as names and keys where they belong.
func TestCloudStores(t *testing.T) {
	doc := `migration: m1
sources:
  - name: gcs
    role: backup
    url: gs://legacy-backups/users/
    endpoint: http://127.0.0.1:4443
    credentials: {auth: none}
  - name: azure
    role: backup
    url: azblob://legacyacct/users/eu/
    credentials: {account_key_env: AZ_KEY}
  - name: azure2
    role: backup
    url: azblob://legacyacct/other/
    credentials: {sas_token_env: AZ_SAS}
target:
  url: gs://oci-import/users/
  kms_key_name: projects/p1/locations/us/keyRings/r1/cryptoKeys/k1
  credentials: {gcp_credentials_file: sa.json}
records:
  user: '^(?P<user>[^/]+)/'
`
	s, err := Parse([]byte(doc), specFile)
	if err != nil {
		t.Fatal(err)
	}
	g := s.Sources[0].ProviderConfig("m1")
	if g.URL != "gs://legacy-backups/users/" || g.Endpoint != "http://127.0.0.1:4443" || g.Credentials["auth"] != "none" {
		t.Errorf("gs site config = %+v", g)
	}
	a := s.Sources[1].ProviderConfig("m1")
	if a.URL != "azblob://legacyacct/users/eu/" || a.Credentials["account_key_env"] != "AZ_KEY" || len(a.Credentials) != 1 {
		t.Errorf("azblob site config = %+v", a)
	}
	if c := s.Sources[2].ProviderConfig("m1").Credentials; c["sas_token_env"] != "AZ_SAS" {
		t.Errorf("azblob sas credentials = %v", c)
	}
	tc := s.Target.ProviderConfig("m1")
	if tc.KMSKeyID != "projects/p1/locations/us/keyRings/r1/cryptoKeys/k1" {
		t.Errorf("gs target key = %q", tc.KMSKeyID)
	}
	if f := tc.Credentials["gcp_credentials_file"]; !filepath.IsAbs(f) || filepath.Base(f) != "sa.json" {
		t.Errorf("gcp_credentials_file not resolved against the spec: %q", f)
	}

	az := strings.Replace(doc, "  url: gs://oci-import/users/\n  kms_key_name: projects/p1/locations/us/keyRings/r1/cryptoKeys/k1\n  credentials: {gcp_credentials_file: sa.json}",
		"  url: azblob://importacct/users/\n  encryption_scope: cmk1\n  credentials: {account_key_env: AZ_KEY}", 1)
	s2, err := Parse([]byte(az), specFile)
	if err != nil {
		t.Fatal(err)
	}
	if c := s2.Target.ProviderConfig("m1"); c.EncryptionScope != "cmk1" || c.KMSKeyID != "" {
		t.Errorf("azblob target config = %+v", c)
	}
	// The encryption scope is part of what a digest approves.
	if s.Digest() == s2.Digest() {
		t.Error("digest ignores the target")
	}
	s3 := strings.Replace(az, "encryption_scope: cmk1", "encryption_scope: cmk2", 1)
	sp3, err := Parse([]byte(s3), specFile)
	if err != nil {
		t.Fatal(err)
	}
	if sp3.Digest() == s2.Digest() {
		t.Error("digest ignores encryption_scope")
	}
}

func TestCryptoErase(t *testing.T) {
	doc := edit(map[int]string{8: "    url: file:///srv/b\n    crypto_erase:\n      key_id: arn:aws:kms:us-east-1:111122223333:key/1234abcd\n      deletion_date: 2026-12-31\n      note: ' CHG-4711 '"}, "")
	s := mustParse(t, doc)
	if s.Sources[0].CryptoErase != nil {
		t.Errorf("sources[0].crypto_erase = %+v, want none", s.Sources[0].CryptoErase)
	}
	ce := s.Sources[1].CryptoErase
	if ce == nil {
		t.Fatal("sources[1].crypto_erase not parsed")
	}
	want := CryptoErase{KeyID: "arn:aws:kms:us-east-1:111122223333:key/1234abcd", DeletionDate: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), DeletionDateRaw: "2026-12-31", Note: "CHG-4711"}
	if *ce != want {
		t.Errorf("crypto_erase = %+v, want %+v", *ce, want)
	}
	// An RFC 3339 time with an offset is kept as the instant, in UTC.
	s2 := mustParse(t, strings.Replace(doc, "deletion_date: 2026-12-31", "deletion_date: '2026-12-31T18:30:00+02:00'", 1))
	if got := s2.Sources[1].CryptoErase.DeletionDate; !got.Equal(time.Date(2026, 12, 31, 16, 30, 0, 0, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("deletion_date = %v", got)
	}
	// Evidence, not scope: declaring it does not change the spec digest.
	if a, b := mustParse(t, base).Digest(), s.Digest(); a != b {
		t.Errorf("crypto_erase changed the spec digest: %s vs %s", a, b)
	}
}

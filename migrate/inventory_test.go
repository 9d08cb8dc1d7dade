package migrate

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// awsInventoryKey URL-encodes a key the way S3 Inventory CSV files carry it (form
// encoding: a space is "+", a "+" is "%2B"; "/" left as it is).
func awsInventoryKey(k string) string {
	return strings.ReplaceAll(url.QueryEscape(k), "%2F", "/")
}

// writeS3Inventory writes an S3 Inventory report in the real AWS layout under root
// (a copy of the destination bucket): <src>/<config>/data/<uuid>.csv.gz, split over
// two data files, and <src>/<config>/<date>/manifest.json whose fileSchema names the
// columns. Keys get prefix in front, as in a bucket. It returns the manifest's path.
func writeS3Inventory(t *testing.T, root, bucket, prefix string, objs map[string]providers.Object, created time.Time) string {
	t.Helper()
	keys := make([]string, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	const schema = "Bucket, Key, Size, LastModifiedDate, ETag, IsMultipartUploaded"
	type file struct {
		Key         string `json:"key"`
		Size        int    `json:"size"`
		MD5Checksum string `json:"MD5checksum"`
	}
	var files []file
	cfgDir := filepath.Join(root, bucket, "all-objects")
	for part, lo := 0, 0; lo < len(keys); part++ {
		hi := min(lo+(len(keys)+1)/2, len(keys))
		var csvBuf bytes.Buffer
		w := csv.NewWriter(&csvBuf)
		for _, k := range keys[lo:hi] {
			o := objs[k]
			if err := w.Write([]string{bucket, awsInventoryKey(prefix + k), strconv.FormatInt(o.Size, 10),
				o.ModTime.UTC().Format("2006-01-02T15:04:05.000Z"), strings.Trim(o.ETag, `"`), "false"}); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		// AWS quotes every field; encoding/csv quotes only where needed, and a reader
		// takes both: quote them all, as the real files are.
		var quoted bytes.Buffer
		r := csv.NewReader(bytes.NewReader(csvBuf.Bytes()))
		recs, err := r.ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			for i, f := range rec {
				if i > 0 {
					quoted.WriteByte(',')
				}
				quoted.WriteString(`"` + strings.ReplaceAll(f, `"`, `""`) + `"`)
			}
			quoted.WriteByte('\n')
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(quoted.Bytes())
		zw.Close()
		name := fmt.Sprintf("%s/all-objects/data/6f1c5f4e-%04d-4d1b-9d0e-%012d.csv.gz", bucket, part, part)
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, gz.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum(gz.Bytes())
		files = append(files, file{Key: name, Size: gz.Len(), MD5Checksum: hex.EncodeToString(sum[:])})
		lo = hi
	}
	man := map[string]any{
		"sourceBucket":      bucket,
		"destinationBucket": "arn:aws:s3:::inventory-reports",
		"version":           "2016-11-30",
		"creationTimestamp": strconv.FormatInt(created.UnixMilli(), 10),
		"fileFormat":        "CSV",
		"fileSchema":        schema,
		"files":             files,
	}
	b, _ := json.MarshalIndent(man, "", "  ")
	mp := filepath.Join(cfgDir, created.UTC().Format("2006-01-02T15-04Z"), "manifest.json")
	if err := os.MkdirAll(filepath.Dir(mp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return mp
}

// verifiedRecords maps every record's key to its state, size and SHA-256.
func verifiedRecords(t *testing.T, m *Migration) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := m.State.Records(context.Background(), checkpoints.Query{}, func(r checkpoints.Record) error {
		var sites []string
		for _, p := range r.Replicas {
			sites = append(sites, p.Site+"="+string(p.State))
		}
		out[r.Key] = fmt.Sprintf("%s %d %s %v", r.State, r.Size, r.SHA256, sites)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const inventorySiteYAML = `  - name: virginia
    role: primary
    url: file://./stores/virginia
    inventory: {format: s3-csv, manifest: %s, prefix: users/}
`

// A plan from an S3 Inventory CSV (generated here in the real format) copies and
// verifies exactly the records a listing does, records which inventory it read and
// its date, leaves out a key deleted since the inventory, and the next plan, from a
// listing, reports the key written after the inventory.
func TestPlanFromS3Inventory(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		listSpec := fmt.Sprintf(sitesYAML, "fail")
		// The twin: the same data planned from listings.
		twin := newHarness(t, k, listSpec)
		twin.standardData(4)
		tm := twin.open()
		runThroughVerify(t, tm)
		want := verifiedRecords(t, tm)

		h := newHarness(t, k, listSpec)
		h.standardData(4)
		invDate := time.Date(2026, 5, 31, 1, 0, 0, 0, time.UTC)
		objs := h.listing("virginia")
		objs["user-00001/gone-since-the-inventory"] = providers.Object{Size: 3, ModTime: invDate}
		mp := writeS3Inventory(t, filepath.Join(h.dir, "inventory-reports"), "legacy-users", "users/", objs, invDate)
		invSpec := replaceOnce(listSpec, "  - {name: virginia, role: primary, url: file://./stores/virginia}\n",
			fmt.Sprintf(inventorySiteYAML, mp))
		if err := os.WriteFile(filepath.Join(h.dir, "ferry.yaml"), []byte(invSpec), 0o644); err != nil {
			t.Fatal(err)
		}
		// Written after the inventory: only a listing sees it.
		h.put("virginia", "user-00002/written-after-the-inventory", []byte("late"))

		m := h.open()
		plan := runThroughVerify(t, m)
		info, ok := plan.Inventories["virginia"]
		if !ok {
			t.Fatalf("plan does not name the inventory: %+v", plan.Inventories)
		}
		if info.Format != "s3-csv" || info.Manifest != mp || !info.Date.Equal(invDate) {
			t.Errorf("inventory recorded as %+v", info)
		}
		if info.Keys != int64(len(objs)) || info.Gone != 1 || info.Planned != int64(len(objs)-1) ||
			len(info.GoneExamples) != 1 || info.GoneExamples[0] != "user-00001/gone-since-the-inventory" {
			t.Errorf("inventory counts %+v, want %d keys, 1 gone", info, len(objs))
		}
		if plan.Sites["virginia"].Objects != int64(len(objs)-1) {
			t.Errorf("virginia: %d objects planned, want %d", plan.Sites["virginia"].Objects, len(objs)-1)
		}
		if len(plan.Missed) != 0 {
			t.Errorf("first plan reports missed keys: %+v", plan.Missed)
		}
		if got := verifiedRecords(t, m); fmt.Sprint(got) != fmt.Sprint(want) {
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%q: from the inventory %q, from a listing %q", k, got[k], v)
				}
			}
			for k, v := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("%q: only from the inventory: %q", k, v)
				}
			}
		}
		if _, ok, _ := m.State.Get(ctx, "user-00002/written-after-the-inventory"); ok {
			t.Fatal("a key the inventory does not name was planned")
		}
		st, err := m.Status(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if st.Inventories["virginia"].Manifest != mp {
			t.Errorf("status does not show the inventory: %+v", st.Inventories)
		}
		pred, err := m.predicate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range pred.Sites {
			if got := s.Inventory; (s.Name == "virginia") != (got != nil) || got != nil && (got.Manifest != mp || got.Date != "2026-05-31T01:00:00Z" || got.Keys != info.Keys) {
				t.Errorf("certificate site %s: inventory %+v", s.Name, got)
			}
		}
		// A re-plan from the same inventory keeps the finished work and misses nothing new.
		again, err := m.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if again.New != 0 || again.Changed != 0 || again.Vanished != 0 || len(again.Missed) != 0 {
			t.Errorf("re-plan from the same inventory: %d new, %d changed, %d vanished, missed %+v", again.New, again.Changed, again.Vanished, again.Missed)
		}
		m.Close()

		// The final plan lists the site: it reports the key the inventory missed.
		if err := os.WriteFile(filepath.Join(h.dir, "ferry.yaml"), []byte(listSpec), 0o644); err != nil {
			t.Fatal(err)
		}
		m2 := h.open()
		final, err := m2.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mk, ok := final.Missed["virginia"]
		if !ok || mk.Count != 1 || len(mk.Examples) != 1 || mk.Examples[0] != "user-00002/written-after-the-inventory" {
			t.Fatalf("missed keys: %+v", final.Missed)
		}
		if mk.Inventory.Manifest != mp || !mk.Inventory.Date.Equal(invDate) {
			t.Errorf("missed keys name inventory %+v", mk.Inventory)
		}
		if len(final.Missed) != 1 || final.New != 1 || len(final.Inventories) != 0 {
			t.Errorf("final plan: missed %+v, %d new, inventories %+v", final.Missed, final.New, final.Inventories)
		}
		b, _ := json.Marshal(final)
		if !strings.Contains(string(b), `"missed":{"virginia":{"inventory":{"format":"s3-csv"`) {
			t.Errorf("--json lacks the missed keys: %s", b)
		}
		// The late key is now a record like any other; nothing else changed.
		if r := record(t, m2, "user-00002/written-after-the-inventory"); r.State != checkpoints.Planned {
			t.Errorf("late key is %s", r.State)
		}
		if final.Changed != 0 || final.Vanished != 0 {
			t.Errorf("final plan: %d changed, %d vanished", final.Changed, final.Vanished)
		}
		if _, err := m2.Copy(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := m2.Verify(ctx, false); err != nil {
			t.Fatal(err)
		}
		if r := record(t, m2, "user-00002/written-after-the-inventory"); r.State != checkpoints.Verified {
			t.Errorf("late key is %s after copy and verify", r.State)
		}
	})
}

// A plain key list is an inventory too: a CRLF line and blank lines are taken as
// written, a key no longer at the site is counted as gone, and a later key list that
// names more keys reports the ones the earlier list missed.
func TestPlanFromKeyList(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	recs := h.standardData(3)
	ctx := context.Background()
	var first []string
	for i, r := range recs {
		if i%4 != 3 {
			first = append(first, r.Key)
		}
	}
	list := strings.Join(first[:2], "\r\n") + "\n\n" + strings.Join(first[2:], "\n") + "\nuser-00000/no-such-key\n"
	keys1 := filepath.Join(h.dir, "keys-1.txt")
	if err := os.WriteFile(keys1, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	date := time.Date(2026, 5, 20, 8, 0, 0, 0, time.UTC)
	os.Chtimes(keys1, date, date)
	spec := replaceOnce(fmt.Sprintf(sitesYAML, "fail"), "  - {name: virginia, role: primary, url: file://./stores/virginia}\n",
		"  - {name: virginia, role: primary, url: file://./stores/virginia, inventory: {format: keys, manifest: keys-1.txt}}\n")
	if err := os.WriteFile(filepath.Join(h.dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	m := h.open()
	p, err := m.Plan(ctx)
	if err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	in := p.Inventories["virginia"]
	if in.Format != "keys" || in.Manifest != keys1 || !in.Date.Equal(date) || in.Keys != int64(len(first)+1) || in.Planned != int64(len(first)) || in.Gone != 1 {
		t.Fatalf("inventory %+v, want %d keys, 1 gone", in, len(first)+1)
	}
	for i, r := range recs {
		got, ok, _ := m.State.Get(ctx, r.Key)
		atVirginia := ok && got.Replica("virginia") != nil
		if atVirginia != (i%4 != 3) {
			t.Errorf("%q: replica at virginia %v, the key list says %v", r.Key, atVirginia, i%4 != 3)
		}
	}
	m.Close()

	// A later key list, naming every key: the ones the first list missed are reported.
	var all []string
	for _, r := range recs {
		all = append(all, r.Key)
	}
	keys2 := filepath.Join(h.dir, "keys-2.txt")
	if err := os.WriteFile(keys2, []byte(strings.Join(all, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "ferry.yaml"), []byte(strings.Replace(spec, "keys-1.txt", "keys-2.txt", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	m2 := h.open()
	p2, err := m2.Plan(ctx)
	if err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	mk := p2.Missed["virginia"]
	if want := int64(len(recs) - len(first)); mk.Count != want || mk.Inventory.Manifest != keys1 || len(mk.Examples) != min(int(want), maxExamples) {
		t.Fatalf("missed %+v, want %d keys missed by %s", mk, want, keys1)
	}
	if p2.Inventories["virginia"].Manifest != keys2 {
		t.Errorf("second plan's inventory %+v", p2.Inventories)
	}
}

// An inventory whose data file does not match the manifest's MD5, or whose manifest
// describes another bucket, fails the plan and changes nothing (I6).
func TestPlanInventoryDamaged(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(2)
	ctx := context.Background()
	mp := writeS3Inventory(t, filepath.Join(h.dir, "inv"), "legacy-users", "", h.listing("virginia"), time.Date(2026, 5, 31, 1, 0, 0, 0, time.UTC))
	spec := replaceOnce(fmt.Sprintf(sitesYAML, "fail"), "  - {name: virginia, role: primary, url: file://./stores/virginia}\n",
		fmt.Sprintf("  - {name: virginia, role: primary, url: file://./stores/virginia, inventory: {format: s3-csv, manifest: %s}}\n", mp))
	if err := os.WriteFile(filepath.Join(h.dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	// Damage one data file: same length, one byte flipped.
	var man s3Manifest
	b, _ := os.ReadFile(mp)
	json.Unmarshal(b, &man)
	df := filepath.Join(h.dir, "inv", filepath.FromSlash(man.Files[1].Key))
	data, _ := os.ReadFile(df)
	data[len(data)-5] ^= 0xff
	os.WriteFile(df, data, 0o644)
	m := h.open()
	_, err := m.Plan(ctx)
	if ExitCode(err) != ExitRuntime || !strings.Contains(err.Error(), "inventory") {
		t.Fatalf("plan from a damaged inventory: %v", err)
	}
	if _, ok, _ := m.State.Meta(ctx, "plan_digest"); ok {
		t.Fatal("a plan was stored from a damaged inventory")
	}
}

// An S3 site on MinIO planned from an S3 Inventory that lives in another bucket
// (s3:// manifest, read with the site's own endpoint and credentials), through the
// real providers: the bucket and prefix come from the site's URL, and the records
// copy and verify.
func TestPlanFromS3InventoryInBucket(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	ctx := context.Background()
	dir := t.TempDir()
	src, invBucket := srv.Bucket(t, false), srv.Bucket(t, false)
	site := openS3Prefix(t, srv, src, "users/")
	recs := synth.Records(synth.Options{Users: 3, RecordsPerUser: 4, Tricky: true, Seed: 11})
	if err := synth.Populate(ctx, site, recs, 4); err != nil {
		t.Fatal(err)
	}
	objs := map[string]providers.Object{}
	if err := site.List(ctx, func(o providers.Object) error { objs[o.Key] = o; return nil }); err != nil {
		t.Fatal(err)
	}
	// Another prefix of the same bucket: in the inventory, not the site's.
	other := openS3Prefix(t, srv, src, "other/")
	if _, err := other.Put(ctx, "x", strings.NewReader("x"), 1, providers.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	all := map[string]providers.Object{}
	for k, o := range objs {
		all["users/"+k] = o
	}
	all["other/x"] = providers.Object{Size: 1}
	local := filepath.Join(dir, "inv")
	mp := writeS3Inventory(t, local, src, "", all, time.Date(2026, 5, 30, 0, 0, 0, 0, time.UTC))
	inv := openS3Prefix(t, srv, invBucket, "")
	err := filepath.WalkDir(local, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(local, p)
		_, err = inv.Put(ctx, filepath.ToSlash(rel), bytes.NewReader(b), int64(len(b)), providers.PutOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	relManifest, _ := filepath.Rel(local, mp)
	cfg := srv.Config(src, "users/")
	specYAML := fmt.Sprintf(`migration: test-migration
sources:
  - name: virginia
    role: primary
    url: s3://%s/users/
    endpoint: %s
    region: %s
    path_style: true
    credentials: {access_key_env: %s, secret_key_env: %s}
    inventory: {format: s3-csv, manifest: "s3://%s/%s"}
target:
  url: file://./target
records:
  user: '^(?P<user>[^/]+)/'
`, src, cfg.Endpoint, cfg.Region, cfg.Credentials["access_key_env"], cfg.Credentials["secret_key_env"], invBucket, filepath.ToSlash(relManifest))
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(specYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "target"), 0o755)
	m, err := Open(ctx, Options{SpecPath: filepath.Join(dir, "ferry.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := p.Inventories["virginia"]
	if in.Keys != int64(len(objs)) || in.Planned != int64(len(objs)) || in.Skipped != 1 || in.Gone != 0 {
		t.Fatalf("inventory %+v, want %d keys and the other prefix skipped", in, len(objs))
	}
	if _, err := m.Copy(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := m.Verify(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if v.Verified != int64(len(objs)) {
		t.Fatalf("%d of %d records verified", v.Verified, len(objs))
	}
}

func openS3Prefix(t *testing.T, srv *s3test.Server, bucket, prefix string) providers.Store {
	t.Helper()
	st, err := s3.New(context.Background(), srv.Config(bucket, prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Three workers sharing a plan read a site's inventory as one range (one worker reads
// it whole) and store the same plan as one process does, each reporting the
// inventory and the same estimate.
func TestSharedPlanFromInventory(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	recs := h.standardData(30)
	var keys []string
	for _, r := range recs {
		keys = append(keys, r.Key)
	}
	list := filepath.Join(h.dir, "keys.txt")
	if err := os.WriteFile(list, []byte(strings.Join(keys, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := replaceOnce(fmt.Sprintf(sitesYAML, "fail"), "  - {name: virginia, role: primary, url: file://./stores/virginia}\n",
		"  - {name: virginia, role: primary, url: file://./stores/virginia, inventory: {format: keys, manifest: keys.txt}}\n")
	if err := os.WriteFile(filepath.Join(h.dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	want := h.planAlone()
	if want.Inventories["virginia"].Planned != int64(len(recs)) {
		t.Fatalf("one process: inventory %+v", want.Inventories)
	}
	var mu sync.Mutex
	var got []*PlanResult
	errs := h.workers(3, filepath.Join(h.dir, "shared.db"), 4, func(m *Migration) error {
		res, err := m.Plan(context.Background())
		mu.Lock()
		got = append(got, res)
		mu.Unlock()
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	for i, res := range got {
		if res.Digest != want.Digest {
			t.Errorf("worker %d: digest %.16s, one process %.16s", i, res.Digest, want.Digest)
		}
		if in := res.Inventories["virginia"]; in.Manifest != list || in.Planned != int64(len(recs)) {
			t.Errorf("worker %d: inventory %+v", i, res.Inventories)
		}
		if fmt.Sprint(res.Estimate.Total) != fmt.Sprint(want.Estimate.Total) {
			t.Errorf("worker %d: estimate %+v, one process %+v", i, res.Estimate.Total, want.Estimate.Total)
		}
	}
}

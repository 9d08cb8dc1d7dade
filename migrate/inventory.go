package migrate

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// Inventories as plan input (DESIGN.md, "Operations"; README, "Inventories"). A site
// whose spec names an inventory is not listed: plan reads the keys the inventory
// names, reads each one at the site (Stat: size, ETag, version, mtime as the site has
// them now, exactly what a listing reports) and stages those as the site's listing.
// So every record is still read and verified one by one, and deletion scope still
// comes only from verified records (I6). What an inventory cannot say is what was
// written after it: a later plan that lists the site (or reads a later inventory)
// reports every key the earlier inventory missed (PlanResult.Missed).

// InventoryInfo says which inventory a site was planned from.
type InventoryInfo struct {
	Format   string `json:"format"`
	Manifest string `json:"manifest"`
	// Date is when the inventory was taken: the S3 manifest's creationTimestamp, the
	// keys file's modification time.
	Date time.Time `json:"date"`
	// Keys counts the site's keys the inventory named; Planned those found at the
	// site and planned; Gone those no longer at the site (not planned).
	Keys    int64 `json:"keys"`
	Planned int64 `json:"planned"`
	Gone    int64 `json:"gone"`
	// GoneExamples names a few of the keys that are gone.
	GoneExamples []string `json:"gone_examples,omitempty"`
	// Skipped counts rows that are not the site's records: keys outside the site's
	// prefix, delete markers and versions that are not the latest.
	Skipped int64 `json:"skipped,omitempty"`
	// Files counts the files read: the manifest and its data files, or the key list.
	Files int `json:"files"`
}

// PlanSource is how plan learned one site's keys: a listing, or an inventory.
type PlanSource struct {
	Kind      string         `json:"kind"` // "listing" | "inventory"
	Inventory *InventoryInfo `json:"inventory,omitempty"`
}

// MissedKeys counts the keys a site's listing found that the inventory the previous
// plan read did not name (written after it, or left out of it).
type MissedKeys struct {
	// Inventory is the inventory that missed them (as the previous plan recorded it).
	Inventory InventoryInfo `json:"inventory"`
	Count     int64         `json:"count"`
	Examples  []string      `json:"examples,omitempty"`
}

const (
	metaPlanSources = "plan_sources" // JSON map site -> PlanSource, from the last plan
	maxExamples     = 10
)

// inventoryReader reads one site's inventory.
type inventoryReader struct {
	site  *spec.Site
	inv   *spec.Inventory
	open  func(ctx context.Context, name string) (io.ReadCloser, error) // a file named by the manifest
	close func()
}

// openInventory prepares to read site's inventory: from a local file, or from the
// object store an s3:// manifest names, opened with the site's own settings.
func (m *Migration) openInventory(ctx context.Context, site *spec.Site) (*inventoryReader, error) {
	inv := site.Inventory
	r := &inventoryReader{site: site, inv: inv, close: func() {}}
	if !strings.HasPrefix(inv.Manifest, "s3://") {
		r.open = func(_ context.Context, name string) (io.ReadCloser, error) { return os.Open(name) }
		return r, nil
	}
	u, err := url.Parse(inv.Manifest)
	if err != nil {
		return nil, fmt.Errorf("inventory manifest: %w", err)
	}
	cfg := site.ProviderConfig(m.Spec.Migration)
	cfg.Name = site.Name + " inventory"
	cfg.URL = "s3://" + u.Host + "/"
	cfg.Quarantine = ""
	store, err := m.Opts.OpenStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the inventory's bucket %s: %w", u.Host, err)
	}
	r.close = func() { store.Close() }
	r.open = func(ctx context.Context, name string) (io.ReadCloser, error) {
		rc, _, err := store.Open(ctx, name)
		return rc, err
	}
	return r, nil
}

// manifestName is the name r.open takes for the manifest itself.
func (r *inventoryReader) manifestName() string {
	if u, err := url.Parse(r.inv.Manifest); err == nil && u.Scheme == "s3" {
		return strings.TrimPrefix(u.Path, "/")
	}
	return r.inv.Manifest
}

// s3Manifest is the part of an S3 Inventory manifest.json that ferry reads.
type s3Manifest struct {
	SourceBucket      string `json:"sourceBucket"`
	DestinationBucket string `json:"destinationBucket"`
	CreationTimestamp string `json:"creationTimestamp"` // milliseconds since the epoch
	FileFormat        string `json:"fileFormat"`
	FileSchema        string `json:"fileSchema"`
	Files             []struct {
		Key         string `json:"key"`
		Size        int64  `json:"size"`
		MD5Checksum string `json:"MD5checksum"`
	} `json:"files"`
}

// each calls fn with every key the inventory names for the site, relative to it,
// and fills info (all but Planned and Gone).
func (r *inventoryReader) each(ctx context.Context, info *InventoryInfo, fn func(key string) error) error {
	info.Format, info.Manifest, info.Files = r.inv.Format, r.inv.Manifest, 1
	switch r.inv.Format {
	case spec.InventoryKeys:
		return r.eachKey(ctx, info, fn)
	case spec.InventoryS3CSV:
		return r.eachS3(ctx, info, fn)
	}
	return fmt.Errorf("inventory format %q is not supported", r.inv.Format)
}

// relative turns an inventory key into the site's relative key; false: not the site's.
func (r *inventoryReader) relative(key string) (string, bool) {
	if !strings.HasPrefix(key, r.inv.Prefix) {
		return "", false
	}
	rel := key[len(r.inv.Prefix):]
	return rel, rel != ""
}

func (r *inventoryReader) eachKey(ctx context.Context, info *InventoryInfo, fn func(string) error) error {
	rc, err := r.open(ctx, r.manifestName())
	if err != nil {
		return fmt.Errorf("reading the key list: %w", err)
	}
	defer rc.Close()
	if f, ok := rc.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			info.Date = fi.ModTime().UTC()
		}
	}
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		k := strings.TrimSuffix(sc.Text(), "\r")
		if k == "" {
			continue
		}
		rel, ok := r.relative(k)
		if !ok {
			info.Skipped++
			continue
		}
		info.Keys++
		if err := fn(rel); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the key list (line %d): %w", line+1, err)
	}
	return nil
}

func (r *inventoryReader) eachS3(ctx context.Context, info *InventoryInfo, fn func(string) error) error {
	name := r.manifestName()
	rc, err := r.open(ctx, name)
	if err != nil {
		return fmt.Errorf("reading the S3 Inventory manifest: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	rc.Close()
	if err != nil {
		return fmt.Errorf("reading the S3 Inventory manifest: %w", err)
	}
	var man s3Manifest
	if err := json.Unmarshal(b, &man); err != nil {
		return fmt.Errorf("the S3 Inventory manifest is not valid JSON: %w", err)
	}
	if !strings.EqualFold(man.FileFormat, "CSV") {
		return fmt.Errorf("the S3 Inventory is in %s: ferry reads CSV inventories (configure the inventory's output format as CSV)", man.FileFormat)
	}
	if r.inv.Bucket != "" && man.SourceBucket != "" && man.SourceBucket != r.inv.Bucket {
		return fmt.Errorf("the S3 Inventory describes bucket %s, but the site is in bucket %s", man.SourceBucket, r.inv.Bucket)
	}
	if ms, err := strconv.ParseInt(man.CreationTimestamp, 10, 64); err == nil {
		info.Date = time.UnixMilli(ms).UTC()
	} else {
		return fmt.Errorf("the S3 Inventory manifest has no valid creationTimestamp (%q)", man.CreationTimestamp)
	}
	cols := map[string]int{}
	for i, c := range strings.Split(man.FileSchema, ",") {
		cols[strings.ToLower(strings.TrimSpace(c))] = i
	}
	col := func(name string) int {
		if i, ok := cols[strings.ToLower(name)]; ok {
			return i
		}
		return -1
	}
	keyCol, bucketCol, latestCol, markerCol := col("Key"), col("Bucket"), col("IsLatest"), col("IsDeleteMarker")
	if keyCol < 0 {
		return fmt.Errorf("the S3 Inventory's fileSchema %q has no Key column", man.FileSchema)
	}
	if len(man.Files) == 0 && man.FileSchema == "" {
		return errors.New("the S3 Inventory manifest lists no files and no fileSchema: is it a manifest.json?")
	}
	for _, f := range man.Files {
		info.Files++
		if err := r.eachS3File(ctx, name, f.Key, f.MD5Checksum, len(cols), func(rec []string) error {
			if bucketCol >= 0 && r.inv.Bucket != "" && rec[bucketCol] != r.inv.Bucket {
				info.Skipped++
				return nil
			}
			if markerCol >= 0 && strings.EqualFold(rec[markerCol], "true") || latestCol >= 0 && strings.EqualFold(rec[latestCol], "false") {
				info.Skipped++ // a delete marker, or a version that is not the object's current one
				return nil
			}
			key, err := url.QueryUnescape(rec[keyCol]) // CSV inventories URL-encode keys
			if err != nil {
				return fmt.Errorf("a key that is not URL-encoded (%q): %w", rec[keyCol], err)
			}
			rel, ok := r.relative(key)
			if !ok {
				info.Skipped++
				return nil
			}
			info.Keys++
			return fn(rel)
		}); err != nil {
			return fmt.Errorf("S3 Inventory data file %s: %w", f.Key, err)
		}
	}
	return nil
}

// eachS3File reads one gzip CSV data file, checking its MD5 against the manifest's.
func (r *inventoryReader) eachS3File(ctx context.Context, manifest, key, wantMD5 string, ncols int, fn func([]string) error) error {
	rc, err := r.openDataFile(ctx, manifest, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	sum := md5.New()
	gz, err := gzip.NewReader(io.TeeReader(rc, sum))
	if err != nil {
		return fmt.Errorf("not gzip: %w", err)
	}
	cr := csv.NewReader(gz)
	cr.FieldsPerRecord = ncols
	cr.ReuseRecord = true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, io.TeeReader(rc, sum)); err != nil { // whatever gzip left unread
		return err
	}
	if wantMD5 != "" && !strings.EqualFold(hex.EncodeToString(sum.Sum(nil)), wantMD5) {
		return fmt.Errorf("MD5 %s, the manifest says %s: the file is damaged or not the one the manifest lists", hex.EncodeToString(sum.Sum(nil)), wantMD5)
	}
	return nil
}

// openDataFile finds a data file the manifest names by its key in the inventory's
// destination bucket. In a bucket that is the key itself; on disk it is the key
// under some folder above the manifest (a copy of the bucket, or of part of it), or
// the file's name beside the manifest or in a data/ folder next to it.
func (r *inventoryReader) openDataFile(ctx context.Context, manifest, key string) (io.ReadCloser, error) {
	if strings.HasPrefix(r.inv.Manifest, "s3://") {
		return r.open(ctx, key)
	}
	dir := filepath.Dir(manifest)
	var tried []string
	for d := dir; ; d = filepath.Dir(d) {
		tried = append(tried, filepath.Join(d, filepath.FromSlash(key)))
		if filepath.Dir(d) == d {
			break
		}
	}
	base := path.Base(key)
	tried = append(tried, filepath.Join(dir, base), filepath.Join(dir, "data", base), filepath.Join(filepath.Dir(dir), "data", base))
	for _, p := range tried {
		if rc, err := r.open(ctx, p); err == nil {
			return rc, nil
		}
	}
	return nil, fmt.Errorf("not found beside the manifest (looked for %s under the folders above %s, and %s in %s and its data/ folders)", key, dir, base, dir)
}

// listInventory reads site's inventory and calls fn with the site's current
// description of every key it names (Stat, several at once); fn is called by one
// goroutine at a time. Keys no longer at the site are counted as gone.
func (m *Migration) listInventory(ctx context.Context, site *spec.Site, store providers.Store, fn func(providers.Object) error) (InventoryInfo, error) {
	var info InventoryInfo
	r, err := m.openInventory(ctx, site)
	if err != nil {
		return info, err
	}
	defer r.close()
	workers := m.Spec.Copy.Concurrency
	if workers < 1 {
		workers = 1
	}
	keys := make(chan string, workers*4)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for i := 0; i < workers; i++ {
		g.Go(func() error {
			for k := range keys {
				o, err := store.Stat(gctx, k)
				mu.Lock()
				switch {
				case err == nil:
					info.Planned++
					err = fn(o)
				case errors.Is(err, providers.ErrNotFound) || !m.Spec.Match(k):
					// Gone since the inventory; or a key records.exclude drops anyway
					// that the store cannot read as an object (a symlink in a tree).
					info.Gone++
					if len(info.GoneExamples) < maxExamples {
						info.GoneExamples = append(info.GoneExamples, k)
					}
					err = nil
				default:
					err = fmt.Errorf("reading %q named by the inventory: %w", k, err)
				}
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	var readInfo InventoryInfo
	g.Go(func() error {
		defer close(keys)
		return r.each(gctx, &readInfo, func(k string) error {
			select {
			case keys <- k:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	err = g.Wait()
	readInfo.Planned, readInfo.Gone, readInfo.GoneExamples = info.Planned, info.Gone, info.GoneExamples
	return readInfo, err
}

// planSources reads what the last plan recorded about how it learned each site's keys.
func (m *Migration) planSources(ctx context.Context) (map[string]PlanSource, error) {
	v, ok, err := m.State.Meta(ctx, metaPlanSources)
	if err != nil || !ok || v == "" {
		return map[string]PlanSource{}, err
	}
	out := map[string]PlanSource{}
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return map[string]PlanSource{}, nil // unreadable: as if never recorded
	}
	return out, nil
}

// Inventories returns, by site, the inventory the last plan read in place of a
// listing (sites that were listed are left out).
func (m *Migration) Inventories(ctx context.Context) (map[string]InventoryInfo, error) {
	srcs, err := m.planSources(ctx)
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	var out map[string]InventoryInfo
	for site, s := range srcs {
		if s.Inventory != nil {
			if out == nil {
				out = map[string]InventoryInfo{}
			}
			out[site] = *s.Inventory
		}
	}
	return out, nil
}

const metaInventoryRead = "inventory_read." // + site: JSON InventoryInfo of this plan round

// listFromInventory is a site's listing taken from its inventory: fn sees the keys
// keep accepts (nil: all). What was read is recorded in the state for the merge,
// which may run in another worker.
func (m *Migration) listFromInventory(ctx context.Context, site *spec.Site, store providers.Store, keep func(string) bool, fn func(providers.Object) error) error {
	info, err := m.listInventory(ctx, site, store, func(o providers.Object) error {
		if keep != nil && !keep(o.Key) {
			return nil
		}
		return fn(o)
	})
	if err != nil {
		return fmt.Errorf("inventory %s: %w", site.Inventory.Manifest, err)
	}
	b, _ := json.Marshal(info)
	if err := m.State.SetMeta(ctx, metaInventoryRead+site.Name, string(b)); err != nil {
		return err
	}
	m.log.Info("read inventory", "site", site.Name, "format", info.Format, "date", info.Date.Format(time.RFC3339),
		"keys", info.Keys, "planned", info.Planned, "gone", info.Gone, "skipped", info.Skipped)
	return nil
}

// currentSources says how this plan learned each site's keys, and fills
// res.Inventories.
func (m *Migration) currentSources(ctx context.Context, res *PlanResult) (map[string]PlanSource, error) {
	out := map[string]PlanSource{}
	for _, s := range m.Spec.Sources {
		if s.Inventory == nil {
			out[s.Name] = PlanSource{Kind: "listing"}
			continue
		}
		v, ok, err := m.State.Meta(ctx, metaInventoryRead+s.Name)
		if err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
		var info InventoryInfo
		if !ok || json.Unmarshal([]byte(v), &info) != nil {
			return nil, Errorf(ExitRuntime, "site %s: the inventory read for this plan is not recorded in the state", s.Name)
		}
		out[s.Name] = PlanSource{Kind: "inventory", Inventory: &info}
		if res.Inventories == nil {
			res.Inventories = map[string]InventoryInfo{}
		}
		res.Inventories[s.Name] = info
	}
	return out, nil
}

func (m *Migration) recordSources(ctx context.Context, srcs map[string]PlanSource) error {
	b, err := json.Marshal(srcs)
	if err == nil {
		err = m.State.SetMeta(ctx, metaPlanSources, string(b))
	}
	if err != nil {
		return Errorf(ExitRuntime, "%w", err)
	}
	return nil
}

// missedCounter finds, while plan reconciles, the keys each site shows now that the
// inventory the previous plan read for it did not name: a key with no live replica
// at that site in the state the previous plan left.
type missedCounter struct {
	m    *Migration
	prev map[string]PlanSource
	out  map[string]*MissedKeys
}

func (m *Migration) newMissedCounter(prev map[string]PlanSource) *missedCounter {
	return &missedCounter{m: m, prev: prev, out: map[string]*MissedKeys{}}
}

func (c *missedCounter) observe(key string, objs []checkpoints.Listed, old *checkpoints.Record) {
	for _, o := range objs {
		ps, ok := c.prev[o.Site]
		if !ok || ps.Inventory == nil || !c.m.Spec.Match(key) {
			continue
		}
		if old != nil {
			if p := old.Replica(o.Site); p != nil && (live(p.State) || gone(p.State)) {
				continue
			}
		}
		mk := c.out[o.Site]
		if mk == nil {
			mk = &MissedKeys{Inventory: *ps.Inventory}
			c.out[o.Site] = mk
		}
		mk.Count++
		if len(mk.Examples) < maxExamples {
			mk.Examples = append(mk.Examples, key)
		}
	}
}

func (c *missedCounter) result() map[string]MissedKeys {
	if len(c.out) == 0 {
		return nil
	}
	out := map[string]MissedKeys{}
	for site, mk := range c.out {
		out[site] = *mk
		c.m.log.Warn("keys the previous plan's inventory missed", "site", site, "count", mk.Count,
			"inventory", mk.Inventory.Manifest, "inventory_date", mk.Inventory.Date.Format(time.RFC3339))
	}
	return out
}

// probeInventory reads a site's inventory manifest (not its data files) for
// validate, and says what it is.
func (m *Migration) probeInventory(ctx context.Context, site *spec.Site) (string, error) {
	r, err := m.openInventory(ctx, site)
	if err != nil {
		return "", err
	}
	defer r.close()
	rc, err := r.open(ctx, r.manifestName())
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", r.inv.Manifest, err)
	}
	defer rc.Close()
	if r.inv.Format == spec.InventoryKeys {
		return "key list " + r.inv.Manifest, nil
	}
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", r.inv.Manifest, err)
	}
	var man s3Manifest
	if err := json.Unmarshal(b, &man); err != nil {
		return "", fmt.Errorf("%s is not an S3 Inventory manifest: %w", r.inv.Manifest, err)
	}
	ms, err := strconv.ParseInt(man.CreationTimestamp, 10, 64)
	if err != nil || !strings.EqualFold(man.FileFormat, "CSV") {
		return "", fmt.Errorf("%s is not an S3 Inventory manifest in CSV (fileFormat %q, creationTimestamp %q)", r.inv.Manifest, man.FileFormat, man.CreationTimestamp)
	}
	if r.inv.Bucket != "" && man.SourceBucket != "" && man.SourceBucket != r.inv.Bucket {
		return "", fmt.Errorf("the S3 Inventory describes bucket %s, but the site is in bucket %s", man.SourceBucket, r.inv.Bucket)
	}
	return fmt.Sprintf("S3 Inventory %s of %s, %d data files", r.inv.Manifest, time.UnixMilli(ms).UTC().Format(time.RFC3339), len(man.Files)), nil
}

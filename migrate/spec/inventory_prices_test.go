package spec

import (
	"path/filepath"
	"strings"
	"testing"
)

// inventorySpec puts a site a with the given url and inventory block.
func inventorySpec(url, inv string) string {
	return edit(map[int]string{5: "    url: " + url + "\n" + indent(inv, "    ")}, "")
}

func TestInventoryParse(t *testing.T) {
	s := mustParse(t, inventorySpec("s3://legacy-users/users/", "inventory: {format: s3-csv, manifest: reports/manifest.json}"))
	inv := s.Sources[0].Inventory
	dir := filepath.Dir(mustAbs(t, specFile))
	if inv == nil || inv.Format != InventoryS3CSV || inv.Manifest != filepath.Join(dir, "reports/manifest.json") || inv.Prefix != "users/" || inv.Bucket != "legacy-users" {
		t.Fatalf("s3 site inventory: %+v", inv)
	}
	if s.Sources[1].Inventory != nil {
		t.Errorf("site b has no inventory: %+v", s.Sources[1].Inventory)
	}
	s = mustParse(t, inventorySpec("s3://legacy-users/users/", "inventory: {format: s3-csv, manifest: \"s3://inv-reports/legacy-users/all/2026-06-01T01-00Z/manifest.json\", prefix: \"\"}"))
	if inv := s.Sources[0].Inventory; inv.Manifest != "s3://inv-reports/legacy-users/all/2026-06-01T01-00Z/manifest.json" || inv.Prefix != "" {
		t.Errorf("s3 manifest, empty prefix: %+v", inv)
	}
	s = mustParse(t, inventorySpec("file:///srv/a", "inventory: {format: keys, manifest: \"file:///srv/keys.txt\"}"))
	if inv := s.Sources[0].Inventory; inv.Format != InventoryKeys || inv.Manifest != "/srv/keys.txt" || inv.Prefix != "" || inv.Bucket != "" {
		t.Errorf("file site key list: %+v", inv)
	}
	// The inventory is how plan learns the keys, not what the migration is.
	a := mustParse(t, inventorySpec("file:///srv/a", "inventory: {format: keys, manifest: /srv/keys.txt}"))
	b := mustParse(t, inventorySpec("file:///srv/a", ""))
	if a.Digest() != b.Digest() {
		t.Error("an inventory changes the spec digest")
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestInventoryErrors(t *testing.T) {
	for _, c := range []struct {
		name, url, inv string
		key, msg       string
	}{
		{"no format", "file:///srv/a", "inventory: {manifest: x.json}", "sources[0].inventory.format", "missing required key"},
		{"no manifest", "file:///srv/a", "inventory: {format: keys}", "sources[0].inventory.manifest", "missing required key"},
		{"bad format", "file:///srv/a", "inventory: {format: csv, manifest: x}", "sources[0].inventory.format", "must be s3-csv"},
		{"parquet", "file:///srv/a", "inventory: {format: s3-parquet, manifest: x}", "sources[0].inventory.format", "not read yet"},
		{"unknown key", "file:///srv/a", "inventory: {format: keys, manifest: x, date: today}", "sources[0].inventory.date", "unknown key"},
		{"s3 manifest at a file site", "file:///srv/a", "inventory: {format: s3-csv, manifest: \"s3://b/m.json\"}", "sources[0].inventory.manifest", "must be an s3:// site"},
		{"s3 manifest not an object", "s3://b/p/", "inventory: {format: s3-csv, manifest: \"s3://b/dir/\"}", "sources[0].inventory.manifest", "must name an object"},
		{"other scheme", "s3://b/p/", "inventory: {format: s3-csv, manifest: \"https://x/m.json\"}", "sources[0].inventory.manifest", "local path, a file:// URL or an s3:// URL"},
		{"relative file url", "file:///srv/a", "inventory: {format: keys, manifest: \"file://keys.txt\"}", "sources[0].inventory.manifest", "absolute path"},
		{"not a mapping", "file:///srv/a", "inventory: keys.txt", "sources[0].inventory", "must be a mapping"},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := inventorySpec(c.url, c.inv)
			_, err := Parse([]byte(doc), specFile)
			if err == nil {
				t.Fatalf("no error for\n%s", doc)
			}
			for _, e := range all(err) {
				if e.Key == c.key && strings.Contains(e.Msg, c.msg) {
					if e.Line != 6 {
						t.Errorf("%s at line %d, want 6", e, e.Line)
					}
					return
				}
			}
			t.Errorf("want %s: ...%s..., got %v", c.key, c.msg, err)
		})
	}
}

func TestPricesParse(t *testing.T) {
	s := mustParse(t, edit(map[int]string{
		5:  "    url: file:///srv/a\n    prices: {list_per_1000: 0.005, get_per_1000: 0.0004, put_per_1000: 0.005, delete_per_1000: 0, egress_per_gib: 0.09}",
		10: "  url: file:///srv/target\n  prices: {currency: usd, put_per_1000: 5, storage_per_gib_month: 0.0255}",
	}, ""))
	a, tg := s.Sources[0].Prices, s.Target.Prices
	if a == nil || a.Currency != "USD" || a.ListPer1000 != 0.005 || a.GetPer1000 != 0.0004 || a.PutPer1000 != 0.005 || a.EgressPerGiB != 0.09 {
		t.Errorf("site prices %+v", a)
	}
	if tg == nil || tg.Currency != "USD" || tg.PutPer1000 != 5 || tg.StoragePerGiBMonth != 0.0255 {
		t.Errorf("target prices %+v", tg)
	}
	if s.Sources[1].Prices != nil {
		t.Errorf("site b has no prices: %+v", s.Sources[1].Prices)
	}
	b := mustParse(t, base)
	if s.Digest() != b.Digest() {
		t.Error("prices change the spec digest")
	}
}

func TestPricesErrors(t *testing.T) {
	for _, c := range []struct {
		name, site, target string
		line               int
		key, msg           string
	}{
		{"negative", "prices: {get_per_1000: -1}", "", 6, "sources[0].prices.get_per_1000", "at least 0"},
		{"text", "prices: {egress_per_gib: cheap}", "", 6, "sources[0].prices.egress_per_gib", "must be a price"},
		{"unknown key", "prices: {head_per_1000: 1}", "", 6, "sources[0].prices.head_per_1000", "unknown key"},
		{"bad currency", "prices: {currency: dollars}", "", 6, "sources[0].prices.currency", "three-letter"},
		{"two currencies", "prices: {currency: EUR}", "prices: {currency: USD}", 12, "target.prices.currency", "one currency"},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := edit(map[int]string{
				5:  "    url: file:///srv/a\n" + indent(c.site, "    "),
				10: "  url: file:///srv/target\n" + indent(c.target, "  "),
			}, "")
			_, err := Parse([]byte(doc), specFile)
			if err == nil {
				t.Fatalf("no error for\n%s", doc)
			}
			for _, e := range all(err) {
				if e.Key == c.key && strings.Contains(e.Msg, c.msg) {
					if e.Line != c.line {
						t.Errorf("%s at line %d, want %d", e, e.Line, c.line)
					}
					return
				}
			}
			t.Errorf("want %s: ...%s..., got %v", c.key, c.msg, err)
		})
	}
}

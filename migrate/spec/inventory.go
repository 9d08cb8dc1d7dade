package spec

import (
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"
)

// Inventory names a report of a site's keys that plan reads instead of listing the
// site (README, "Inventories"):
//
//	sources:
//	  - name: virginia
//	    url: s3://legacy-users/users/
//	    inventory:
//	      format: s3-csv                 # s3-csv | keys
//	      manifest: inventory/legacy-users/all/2026-06-01T01-00Z/manifest.json
//	      prefix: users/                 # optional; see below
//
// Decisions where DESIGN.md is silent:
//   - format s3-csv is an S3 Inventory report in CSV: manifest names its
//     manifest.json, whose fileSchema names the columns and whose files are gzip CSV
//     data files (found beside the manifest, at the manifest's files[].key under any
//     folder above it, or in a data/ folder next to it). keys is a plain text file,
//     one relative key per line (blank lines skipped, a trailing \r dropped).
//   - manifest is a local path (relative to the spec's folder, "~/" allowed) or a
//     file:// URL. An s3:// URL is read with the site's own endpoint, region and
//     credentials (an inventory's destination bucket reached the way the site is).
//   - prefix is what each inventory key starts with before the relative key; keys
//     outside it are not the site's and are skipped. Default: the site URL's key
//     prefix for object-store sites (an S3 Inventory holds whole bucket keys), ""
//     for file sites and for the keys format.
//   - The inventory is an input, not what the migration is: it stays out of the spec
//     digest (the plan digest covers every key it yields).
type Inventory struct {
	Format   string `json:"format"`   // InventoryS3CSV | InventoryKeys
	Manifest string `json:"manifest"` // resolved: an absolute path, or an s3:// URL
	// Prefix is removed from each inventory key (keys outside it are skipped).
	Prefix string `json:"prefix,omitempty"`
	// Bucket is the site's bucket an S3 Inventory must describe ("" when not an
	// object store site: not checked).
	Bucket string `json:"bucket,omitempty"`
}

// Inventory formats.
const (
	InventoryS3CSV = "s3-csv"
	InventoryKeys  = "keys"
)

var inventoryKeys = []string{"format", "manifest", "prefix"}

// inventory parses a site's inventory mapping; loc is the site's parsed URL.
func (p *parser) inventory(n *yaml.Node, path string, loc location) *Inventory {
	if isNull(n) {
		return nil
	}
	m, ok := p.fields(n, path, inventoryKeys...)
	if !ok {
		return nil
	}
	inv := &Inventory{}
	good := true
	if p.required(m, resolveAlias(n), path, "format") {
		kp := joinKey(path, "format")
		if v, ok := p.nonEmpty(m["format"].val, kp); ok {
			switch v {
			case InventoryS3CSV, InventoryKeys:
				inv.Format = v
			case "s3-parquet", "s3-orc", "parquet", "orc":
				p.add(m["format"].val, kp, "S3 Inventory in Parquet or ORC is not read yet: configure the inventory as CSV (format s3-csv), or write the keys to a file (format keys)")
				good = false
			default:
				p.add(m["format"].val, kp, "must be s3-csv (an S3 Inventory manifest) or keys (a file with one key per line)")
				good = false
			}
		} else {
			good = false
		}
	} else {
		good = false
	}
	if p.required(m, resolveAlias(n), path, "manifest") {
		kp := joinKey(path, "manifest")
		if v, ok := p.nonEmpty(m["manifest"].val, kp); ok {
			switch {
			case strings.ContainsAny(v, "\x00\n\r"):
				p.add(m["manifest"].val, kp, "must not contain control characters")
				good = false
			case strings.HasPrefix(v, "s3://"):
				u, err := url.Parse(v)
				if err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" || strings.HasSuffix(u.Path, "/") {
					p.add(m["manifest"].val, kp, "must name an object: s3://bucket/path/manifest.json")
					good = false
				} else if loc.scheme != "s3" {
					p.add(m["manifest"].val, kp, "an s3:// manifest is read with the site's own settings, so the site must be an s3:// site (or give a local path)")
					good = false
				} else {
					inv.Manifest = v
				}
			case strings.HasPrefix(v, "file://"):
				pth := strings.TrimPrefix(v, "file://")
				pth = strings.TrimPrefix(pth, "localhost")
				if !strings.HasPrefix(pth, "/") {
					p.add(m["manifest"].val, kp, "a file:// manifest must be an absolute path (file:///dir/manifest.json); write a relative path without file://")
					good = false
				} else {
					inv.Manifest = pth
				}
			case strings.Contains(v, "://"):
				p.add(m["manifest"].val, kp, "must be a local path, a file:// URL or an s3:// URL")
				good = false
			default:
				inv.Manifest = resolvePath(p.dir, v)
			}
		} else {
			good = false
		}
	} else {
		good = false
	}
	switch loc.scheme {
	case "file", "":
	default:
		if inv.Format == InventoryS3CSV {
			inv.Prefix = loc.prefix
			if loc.scheme == "s3" {
				inv.Bucket = loc.bucket
			}
		}
	}
	if e, ok := m["prefix"]; ok && !isNull(e.val) {
		kp := joinKey(path, "prefix")
		if v, ok := p.str(e.val, kp); ok {
			if strings.ContainsAny(v, "\x00\n\r") {
				p.add(e.val, kp, "must not contain control characters")
				good = false
			} else {
				inv.Prefix = v
			}
		} else {
			good = false
		}
	}
	if !good {
		return nil
	}
	return inv
}

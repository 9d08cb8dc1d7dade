package migrate

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ferrymigrate/ferry/migrate/spec"
)

// FuzzS3Inventory feeds ferry's S3 Inventory reader a manifest and one data file,
// both untrusted: it must never panic, and every key it yields must start after the
// prefix it strips (and be non-empty).
func FuzzS3Inventory(f *testing.F) {
	f.Add(`{"sourceBucket":"b","creationTimestamp":"1780000000000","fileFormat":"CSV","fileSchema":"Bucket, Key, Size","files":[{"key":"d/1.csv.gz","MD5checksum":""}]}`,
		"\"b\",\"users/a+b%2Bc\",\"3\"\n\"b\",\"other/x\",\"1\"\n", "users/")
	f.Add(`{"creationTimestamp":"1","fileFormat":"CSV","fileSchema":"Key, IsLatest, IsDeleteMarker","files":[{"key":"x"}]}`,
		"\"a\",\"true\",\"false\"\n\"a\",\"false\",\"false\"\n\"b\",\"true\",\"true\"\n", "")
	f.Add(`{"fileFormat":"Parquet"}`, "", "")
	f.Add(`{"creationTimestamp":"1","fileFormat":"CSV","fileSchema":"Key","files":[{"key":"x","MD5checksum":"00"}]}`, "\"%zz\"\n", "")
	f.Fuzz(func(t *testing.T, manifest, data, prefix string) {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write([]byte(data))
		zw.Close()
		sum := md5.Sum(gz.Bytes())
		manifest = strings.ReplaceAll(manifest, `"MD5checksum":""`, `"MD5checksum":"`+hex.EncodeToString(sum[:])+`"`)
		r := &inventoryReader{
			inv:   &spec.Inventory{Format: spec.InventoryS3CSV, Manifest: "s3://inv/m.json", Prefix: prefix, Bucket: "b"},
			close: func() {},
			open: func(_ context.Context, name string) (io.ReadCloser, error) {
				if name == "m.json" {
					return io.NopCloser(strings.NewReader(manifest)), nil
				}
				if strings.Count(manifest, name) == 0 {
					return nil, errors.New("no such file")
				}
				return io.NopCloser(bytes.NewReader(gz.Bytes())), nil
			},
		}
		var info InventoryInfo
		n := int64(0)
		_ = r.each(context.Background(), &info, func(k string) error {
			if k == "" {
				return fmt.Errorf("empty key")
			}
			n++
			return nil
		})
		if info.Keys != n {
			t.Fatalf("info says %d keys, %d yielded", info.Keys, n)
		}
	})
}

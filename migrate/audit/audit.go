// Package audit reads the stores' own access logs: S3 server access logs, MinIO audit
// log JSON, OCI Audit events, GCS Cloud Audit Logs (Data Access) and Azure
// StorageBlobLogs, into one Access type that `ferry audit` checks against the
// migration's journal.
package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Formats are the log formats Read understands.
var Formats = []string{"s3", "minio", "oci", "gcs", "azure"}

// Operation classes, as ferry's journal names them.
const (
	OpRead   = "read"
	OpWrite  = "write"
	OpDelete = "delete"
	OpList   = "list"
	OpOther  = "other"
)

// Access is one logged request to a store.
type Access struct {
	Time      time.Time
	Bucket    string // bucket or container, as the log names it
	Object    string // object key within Bucket ("" for bucket-level requests)
	Operation string // OpRead, OpWrite, OpDelete, OpList or OpOther
	Action    string // the log's own name (REST.GET.OBJECT, GetObject, storage.objects.get, ...)
	Identity  string // who, as the log names them (access key, principal, e-mail)
	// AccessKey is the access key id the request was signed with, where the log gives
	// one apart from Identity (MinIO: accessKey, with the parent user in Identity).
	AccessKey string
	Status    int // HTTP status, 0 if not logged
	SourceIP  string
	RequestID string
	Line      int // the entry's line (or record) number in its log, from 1
}

// Read parses one log. format is one of Formats or "auto"/"" (sniffed from the first
// non-empty line); gzip input is decompressed. name is used in errors only.
func Read(r io.Reader, name, format string) ([]Access, string, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	if format == "" || format == "auto" {
		if format, err = sniff(data); err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
	}
	var out []Access
	switch format {
	case "s3":
		out, err = readS3(data)
	case "minio":
		out, err = readJSON(data, minioAccess)
	case "oci":
		out, err = readJSON(data, ociAccess)
	case "gcs":
		out, err = readJSON(data, gcsAccess)
	case "azure":
		out, err = readJSON(data, azureAccess)
	default:
		return nil, "", fmt.Errorf("%s: unknown log format %q (want auto, %s)", name, format, strings.Join(Formats, ", "))
	}
	if err != nil {
		return nil, format, fmt.Errorf("%s: %w", name, err)
	}
	return out, format, nil
}

// sniff names the format of a log from its first entry.
func sniff(data []byte) (string, error) {
	first := bytes.TrimSpace(data)
	if len(first) == 0 {
		return "", errors.New("empty log: cannot tell its format (give --format)")
	}
	if first[0] != '{' && first[0] != '[' {
		return "s3", nil
	}
	head := first[:min(len(first), 4096)]
	switch {
	case bytes.Contains(head, []byte(`"protoPayload"`)):
		return "gcs", nil
	case bytes.Contains(head, []byte(`"operationName"`)) && bytes.Contains(head, []byte(`"uri"`)):
		return "azure", nil
	case bytes.Contains(head, []byte(`"api"`)) && bytes.Contains(head, []byte(`"deploymentid"`)),
		bytes.Contains(head, []byte(`"api"`)) && bytes.Contains(head, []byte(`"requestID"`)):
		return "minio", nil
	case bytes.Contains(head, []byte(`"eventType"`)) || bytes.Contains(head, []byte(`"eventName"`)):
		return "oci", nil
	}
	return "", errors.New("cannot tell the log's format from its first entry (give --format)")
}

package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// entryFunc turns one JSON log entry into the accesses it records (a batch delete
// names several objects), or none when the entry is not about objects.
type entryFunc func(raw json.RawMessage) ([]Access, error)

// readJSON reads JSON entries: one per line, concatenated, in a top-level array, or in
// a {"records": [...]} wrapper (Azure's and Event Hubs' export shape).
func readJSON(data []byte, fn entryFunc) ([]Access, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var out []Access
	add := func(raw json.RawMessage, off int64) error {
		line := 1 + bytes.Count(data[:off], []byte{'\n'})
		acc, err := fn(raw)
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		for i := range acc {
			acc[i].Line = line
		}
		out = append(out, acc...)
		return nil
	}
	for {
		off := dec.InputOffset()
		for off < int64(len(data)) && (data[off] == ' ' || data[off] == '\n' || data[off] == '\r' || data[off] == '\t') {
			off++
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("line %d: %w", 1+bytes.Count(data[:off], []byte{'\n'}), err)
		}
		var list []json.RawMessage
		if raw[0] == '[' {
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, err
			}
		} else {
			var wrap struct {
				Records []json.RawMessage `json:"records"`
			}
			if json.Unmarshal(raw, &wrap) == nil && wrap.Records != nil {
				list = wrap.Records
			}
		}
		if list == nil {
			if raw[0] != '{' {
				return nil, fmt.Errorf("line %d: a log entry must be a JSON object", 1+bytes.Count(data[:off], []byte{'\n'}))
			}
			if err := add(raw, off); err != nil {
				return nil, err
			}
			continue
		}
		for _, e := range list {
			if err := add(e, off); err != nil {
				return nil, err
			}
		}
	}
}

// nameOperation classifies an API operation name (GetObject, DeleteBlob, ...).
func nameOperation(name string) string {
	n := strings.ToLower(name)
	switch {
	case strings.Contains(n, "delete"):
		return OpDelete
	case strings.HasPrefix(n, "list"):
		return OpList
	case strings.HasPrefix(n, "get") || strings.HasPrefix(n, "head"):
		if strings.Contains(n, "object") || strings.Contains(n, "blob") {
			return OpRead
		}
	case strings.HasPrefix(n, "put") || strings.HasPrefix(n, "copy") || strings.Contains(n, "upload") ||
		strings.Contains(n, "multipart") || strings.HasPrefix(n, "create") || strings.HasPrefix(n, "restore"):
		return OpWrite
	}
	return OpOther
}

func parseTime(s, field string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q is not an RFC 3339 time", field, s)
	}
	return t.UTC(), nil
}

// minioAccess reads one MinIO audit log entry (the JSON its audit webhook POSTs and
// its audit log targets write): time, api {name, bucket, object, objects, statusCode},
// remotehost, requestID, accessKey, parentUser.
func minioAccess(raw json.RawMessage) ([]Access, error) {
	var e struct {
		Time string `json:"time"`
		API  struct {
			Name       string `json:"name"`
			Bucket     string `json:"bucket"`
			Object     string `json:"object"`
			StatusCode int    `json:"statusCode"`
			Objects    []struct {
				ObjectName string `json:"objectName"`
			} `json:"objects"`
		} `json:"api"`
		RemoteHost string `json:"remotehost"`
		RequestID  string `json:"requestID"`
		AccessKey  string `json:"accessKey"`
		ParentUser string `json:"parentUser"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	if e.API.Name == "" {
		return nil, nil // not an API call (a console or admin event)
	}
	t, err := parseTime(e.Time, "time")
	if err != nil {
		return nil, err
	}
	a := Access{
		Time: t, Bucket: e.API.Bucket, Object: e.API.Object, Operation: nameOperation(e.API.Name), Action: e.API.Name,
		Identity: e.AccessKey, AccessKey: e.AccessKey, Status: e.API.StatusCode, SourceIP: e.RemoteHost, RequestID: e.RequestID,
	}
	if a.Identity == "" {
		a.Identity = e.ParentUser
	}
	if len(e.API.Objects) == 0 {
		return []Access{a}, nil
	}
	var out []Access
	for _, o := range e.API.Objects {
		b := a
		b.Object = o.ObjectName
		out = append(out, b)
	}
	return out, nil
}

// ociAccess reads one OCI Audit event (CloudEvents envelope, version 2 schema):
// eventTime, data {eventName, identity {principalName, principalId, ipAddress},
// request {id, path: /n/NS/b/BUCKET/o/OBJECT}, response {status}}.
func ociAccess(raw json.RawMessage) ([]Access, error) {
	var e struct {
		EventTime string `json:"eventTime"`
		Data      struct {
			EventName string `json:"eventName"`
			Identity  struct {
				PrincipalName string `json:"principalName"`
				PrincipalID   string `json:"principalId"`
				IPAddress     string `json:"ipAddress"`
			} `json:"identity"`
			Request struct {
				ID   string `json:"id"`
				Path string `json:"path"`
			} `json:"request"`
			Response struct {
				Status json.RawMessage `json:"status"`
			} `json:"response"`
			AdditionalDetails struct {
				BucketName string `json:"bucketName"`
			} `json:"additionalDetails"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	if e.Data.EventName == "" {
		return nil, errors.New("not an OCI Audit event: no data.eventName")
	}
	t, err := parseTime(e.EventTime, "eventTime")
	if err != nil {
		return nil, err
	}
	bucket, object := e.Data.AdditionalDetails.BucketName, ""
	if p := e.Data.Request.Path; p != "" {
		if u, err := url.Parse(p); err == nil {
			p = u.Path
		}
		parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 6) // n NS b BUCKET o OBJECT
		if len(parts) >= 4 && parts[0] == "n" && parts[2] == "b" {
			bucket = parts[3]
		}
		if len(parts) == 6 && parts[4] == "o" {
			object = parts[5]
		}
	}
	id := e.Data.Identity.PrincipalName
	if id == "" {
		id = e.Data.Identity.PrincipalID
	}
	return []Access{{
		Time: t, Bucket: bucket, Object: object, Operation: nameOperation(e.Data.EventName), Action: e.Data.EventName,
		Identity: id, Status: jsonInt(e.Data.Response.Status), SourceIP: e.Data.Identity.IPAddress, RequestID: e.Data.Request.ID,
	}}, nil
}

// jsonInt reads a number that may be written as a JSON number or string.
func jsonInt(raw json.RawMessage) int {
	s := strings.Trim(string(raw), `"`)
	n, _ := strconv.Atoi(s)
	return n
}

// gcsAccess reads one Cloud Audit Logs LogEntry for Cloud Storage (Data Access):
// timestamp, protoPayload {methodName, resourceName: projects/_/buckets/B/objects/K,
// authenticationInfo.principalEmail, requestMetadata.callerIp, status.code}.
func gcsAccess(raw json.RawMessage) ([]Access, error) {
	var e struct {
		Timestamp    string `json:"timestamp"`
		InsertID     string `json:"insertId"`
		ProtoPayload struct {
			MethodName         string `json:"methodName"`
			ResourceName       string `json:"resourceName"`
			AuthenticationInfo struct {
				PrincipalEmail string `json:"principalEmail"`
			} `json:"authenticationInfo"`
			RequestMetadata struct {
				CallerIP string `json:"callerIp"`
			} `json:"requestMetadata"`
			Status struct {
				Code int `json:"code"`
			} `json:"status"`
		} `json:"protoPayload"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	p := e.ProtoPayload
	if p.MethodName == "" {
		return nil, errors.New("not a Cloud Audit Logs entry: no protoPayload.methodName")
	}
	t, err := parseTime(e.Timestamp, "timestamp")
	if err != nil {
		return nil, err
	}
	var bucket, object string
	if rest, ok := strings.CutPrefix(p.ResourceName, "projects/_/buckets/"); ok {
		bucket, object, _ = strings.Cut(rest, "/objects/")
	}
	op := OpOther
	switch m := p.MethodName; {
	case strings.HasSuffix(m, ".get"):
		op = OpRead
	case strings.HasSuffix(m, ".list"):
		op = OpList
	case strings.HasSuffix(m, ".delete"):
		op = OpDelete
	case strings.HasSuffix(m, ".create"), strings.HasSuffix(m, ".update"), strings.HasSuffix(m, ".patch"),
		strings.HasSuffix(m, ".rewrite"), strings.HasSuffix(m, ".compose"), strings.HasSuffix(m, ".copy"):
		op = OpWrite
	}
	return []Access{{
		Time: t, Bucket: bucket, Object: object, Operation: op, Action: p.MethodName,
		Identity: p.AuthenticationInfo.PrincipalEmail, Status: grpcHTTP(p.Status.Code), SourceIP: p.RequestMetadata.CallerIP,
	}}, nil
}

// grpcHTTP maps a google.rpc.Code to the HTTP status it stands for.
func grpcHTTP(code int) int {
	switch code {
	case 0:
		return 200
	case 3, 11:
		return 400
	case 5:
		return 404
	case 6, 10:
		return 409
	case 7:
		return 403
	case 9:
		return 412
	case 16:
		return 401
	case 8:
		return 429
	}
	return 500
}

// azureAccess reads one StorageBlobLogs record, in the shape diagnostic settings
// archive (time, operationName, statusCode, callerIpAddress, correlationId, uri,
// identity {type, tokenHash, requester {upn, objectId, appId}}, properties.objectKey)
// or as a Log Analytics row (TimeGenerated, OperationName, StatusCode, CallerIpAddress,
// CorrelationId, Uri, ObjectKey, AuthenticationType, AuthenticationHash, RequesterUpn,
// RequesterObjectId, RequesterAppId).
func azureAccess(raw json.RawMessage) ([]Access, error) {
	var e struct {
		Time          string          `json:"time"`
		Operation     string          `json:"operationName"`
		Status        json.RawMessage `json:"statusCode"`
		CallerIP      string          `json:"callerIpAddress"`
		CorrelationID string          `json:"correlationId"`
		URI           string          `json:"uri"`
		Identity      struct {
			Type      string `json:"type"`
			TokenHash string `json:"tokenHash"`
			Requester struct {
				UPN      string `json:"upn"`
				ObjectID string `json:"objectId"`
				AppID    string `json:"appId"`
			} `json:"requester"`
		} `json:"identity"`
		Properties struct {
			ObjectKey string `json:"objectKey"`
		} `json:"properties"`
		// Log Analytics column names.
		TimeGenerated      string          `json:"TimeGenerated"`
		OperationName      string          `json:"OperationName"`
		StatusCode         json.RawMessage `json:"StatusCode"`
		CallerIPAddress    string          `json:"CallerIpAddress"`
		CorrelationID2     string          `json:"CorrelationId"`
		URI2               string          `json:"Uri"`
		ObjectKey          string          `json:"ObjectKey"`
		AuthenticationType string          `json:"AuthenticationType"`
		AuthenticationHash string          `json:"AuthenticationHash"`
		RequesterUpn       string          `json:"RequesterUpn"`
		RequesterObjectID  string          `json:"RequesterObjectId"`
		RequesterAppID     string          `json:"RequesterAppId"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	// The Log Analytics columns, where the record has them, fill the archive fields.
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	fill(&e.Time, e.TimeGenerated)
	fill(&e.Operation, e.OperationName)
	fill(&e.CallerIP, e.CallerIPAddress)
	fill(&e.CorrelationID, e.CorrelationID2)
	fill(&e.URI, e.URI2)
	fill(&e.Properties.ObjectKey, e.ObjectKey)
	fill(&e.Identity.Type, e.AuthenticationType)
	fill(&e.Identity.TokenHash, e.AuthenticationHash)
	fill(&e.Identity.Requester.UPN, e.RequesterUpn)
	fill(&e.Identity.Requester.ObjectID, e.RequesterObjectID)
	fill(&e.Identity.Requester.AppID, e.RequesterAppID)
	if e.Status == nil {
		e.Status = e.StatusCode
	}
	if e.Operation == "" {
		return nil, errors.New("not a StorageBlobLogs record: no operationName")
	}
	t, err := parseTime(e.Time, "time")
	if err != nil {
		return nil, err
	}
	var bucket, object string
	if k := e.Properties.ObjectKey; k != "" { // /account/container/blob
		parts := strings.SplitN(strings.TrimPrefix(k, "/"), "/", 3)
		if len(parts) >= 2 {
			bucket = parts[1]
		}
		if len(parts) == 3 {
			object = parts[2]
		}
	} else if u, err := url.Parse(e.URI); err == nil && e.URI != "" {
		bucket, object, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	}
	id := e.Identity.Requester.UPN
	fill(&id, e.Identity.Requester.ObjectID)
	fill(&id, e.Identity.Requester.AppID)
	if id == "" && e.Identity.Type != "" {
		id = strings.TrimSpace(e.Identity.Type + " " + e.Identity.TokenHash)
	}
	ip, _, found := strings.Cut(e.CallerIP, ":")
	if !found || strings.Count(e.CallerIP, ":") > 1 {
		ip = e.CallerIP
	}
	return []Access{{
		Time: t, Bucket: bucket, Object: object, Operation: nameOperation(e.Operation), Action: e.Operation,
		Identity: id, Status: jsonInt(e.Status), SourceIP: ip, RequestID: e.CorrelationID,
	}}, nil
}

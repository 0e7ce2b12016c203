package s3endpoint

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// AWS Signature Version 4, as a server checks it: the client's canonical
// request is rebuilt from what arrived, with exactly the headers the client
// says it signed, and signed again with the secret of its access key. Only
// the Authorization header form is accepted (no presigned URLs: SQL Server
// does not use them).

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDateForm  = "20060102T150405Z"
	// unsignedPayload is the payload hash a client sends over TLS when it
	// does not hash the body.
	unsignedPayload = "UNSIGNED-PAYLOAD"
	// maxSkew is how far a request's X-Amz-Date may be from the server's
	// clock, as S3 allows.
	maxSkew = 15 * time.Minute
)

// authorization is a parsed Authorization header.
type authorization struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

func parseAuthorization(h string) (authorization, error) {
	var a authorization
	rest, ok := strings.CutPrefix(h, sigAlgorithm+" ")
	if !ok {
		return a, fmt.Errorf("the Authorization header is not %s", sigAlgorithm)
	}
	for _, f := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return a, fmt.Errorf("malformed Authorization field %q", f)
		}
		switch k {
		case "Credential":
			parts := strings.Split(v, "/")
			if len(parts) != 5 || parts[4] != "aws4_request" {
				return a, fmt.Errorf("malformed credential scope %q", v)
			}
			a.accessKey, a.date, a.region, a.service = parts[0], parts[1], parts[2], parts[3]
		case "SignedHeaders":
			a.signedHeaders = strings.Split(v, ";")
		case "Signature":
			a.signature = v
		}
	}
	if a.accessKey == "" || len(a.signedHeaders) == 0 || a.signature == "" {
		return a, fmt.Errorf("the Authorization header lacks a credential, signed headers or signature")
	}
	if !contains(a.signedHeaders, "host") {
		return a, fmt.Errorf("the host header is not signed")
	}
	return a, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// signature computes the signature of r as a client with secret would
// have made it, for the parsed authorization and payload hash.
func signature(r *http.Request, a authorization, secret, amzDate, payloadHash string) string {
	canonical := strings.Join([]string{
		r.Method,
		canonicalURI(r.URL),
		canonicalQuery(r.URL.RawQuery),
		canonicalHeaders(r, a.signedHeaders),
		strings.Join(a.signedHeaders, ";"),
		payloadHash,
	}, "\n")
	scope := strings.Join([]string{a.date, a.region, a.service, "aws4_request"}, "/")
	sum := sha256.Sum256([]byte(canonical))
	toSign := strings.Join([]string{sigAlgorithm, amzDate, scope, hex.EncodeToString(sum[:])}, "\n")
	key := hmacSHA256([]byte("AWS4"+secret), a.date)
	key = hmacSHA256(key, a.region)
	key = hmacSHA256(key, a.service)
	key = hmacSHA256(key, "aws4_request")
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// canonicalURI is the path as sent, URI-encoded once (S3 does not encode
// it twice); an empty path is "/".
func canonicalURI(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

// canonicalQuery sorts the query's parameters and encodes them as SigV4
// does: RFC 3986, every byte but the unreserved ones percent-encoded.
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var params []kv
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			dk, dv = k, v
		}
		params = append(params, kv{awsEncode(dk), awsEncode(dv)})
	}
	sort.Slice(params, func(i, j int) bool {
		if params[i].k != params[j].k {
			return params[i].k < params[j].k
		}
		return params[i].v < params[j].v
	})
	parts := make([]string, len(params))
	for i, p := range params {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

func awsEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// canonicalHeaders lists the signed headers, lower-case, with their values
// trimmed and inner runs of spaces collapsed, each line ending in \n.
func canonicalHeaders(r *http.Request, signed []string) string {
	var b strings.Builder
	for _, name := range signed {
		var vals []string
		if name == "host" {
			vals = []string{r.Host}
		} else {
			vals = append([]string(nil), r.Header.Values(name)...)
		}
		for k, v := range vals {
			vals[k] = strings.Join(strings.Fields(v), " ")
		}
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(strings.Join(vals, ","))
		b.WriteByte('\n')
	}
	return b.String()
}

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cofferhq/coffer/services/gateway"
)

// apiClient talks to the gateway's REST API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func newAPIClient(base, token string) *apiClient {
	return &apiClient{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: 30 * time.Second}}
}

// trust makes the client trust the CA certificates in caFile (PEM), as
// well as the system's: a gateway serving HTTPS with a certificate from
// coffer's CA.
func (c *apiClient) trust(caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("--api-ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("--api-ca: no PEM certificate in %s", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.http.Transport = tr
	return nil
}

// apiError is an error answer of the API.
type apiError struct {
	status int
	// code is the error's stable code (gateway.ErrorCodes).
	code string
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	return c.send(ctx, c.http, method, path, body, out)
}

// doWithin is do with a time limit of its own, for a request that waits
// on SQL Server.
func (c *apiClient) doWithin(ctx context.Context, limit time.Duration, method, path string, body, out any) error {
	hc := *c.http
	hc.Timeout = limit
	return c.send(ctx, &hc, method, path, body, out)
}

func (c *apiClient) send(ctx context.Context, hc *http.Client, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return err // interrupted: not the API's doing
		}
		return &unreachableError{base: c.base, err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e gateway.Error
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return &apiError{status: resp.StatusCode, code: e.Error.Code, msg: e.Error.Message}
		}
		return &apiError{status: resp.StatusCode, msg: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// checkURL runs the URL check of an instance, waiting as long as the
// gateway waits for a streamer's answer, and a little more.
func (c *apiClient) checkURL(ctx context.Context, instance string) (gateway.URLCheck, error) {
	var res gateway.URLCheck
	err := c.doWithin(ctx, gateway.URLCheckWait+15*time.Second, http.MethodPost, "/api/v1/instances/"+url.PathEscape(instance)+"/check-url", nil, &res)
	return res, err
}

func (c *apiClient) job(ctx context.Context, id string) (gateway.Job, error) {
	var j gateway.Job
	err := c.do(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id), nil, &j)
	return j, err
}

// waitJob polls a job until it ends, calling progress on each change. It
// asks often at first, so a short job returns at once, and backs off to
// every.
func (c *apiClient) waitJob(ctx context.Context, id string, every time.Duration, progress func(gateway.Job)) (gateway.Job, error) {
	var last gateway.Job
	wait := min(20*time.Millisecond, every)
	for {
		j, err := c.job(ctx, id)
		var ae *apiError
		switch {
		case errors.As(err, &ae) && ae.status == http.StatusNotFound:
			// not recorded yet
		case err != nil:
			return last, err
		default:
			if (j.State != last.State || j.Percent != last.Percent || j.Step != last.Step) && progress != nil {
				progress(j)
			}
			last = j
			if j.Done() {
				return j, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, every)
	}
}

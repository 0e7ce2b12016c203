package mssqlsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// device is one backup device named in a BACKUP or RESTORE statement.
type device struct {
	spec string // as written: a path, NUL, or an s3:// URL
	url  bool
	nul  bool
	path string // resolved file path for DISK

	host, bucket, key string // for URL
	cred              *credential
}

// String names the device as SQL Server's messages do.
func (d *device) String() string { return d.spec }

func (i *Instance) diskDevice(spec string) *device {
	if strings.EqualFold(spec, "NUL") || strings.EqualFold(spec, "NUL:") {
		return &device{spec: spec, nul: true}
	}
	p := spec
	if !filepath.IsAbs(p) {
		p = filepath.Join(i.cfg.BackupDir, p)
	}
	return &device{spec: spec, path: p}
}

// urlDevice parses s3://host:port/bucket/key and finds its credential: the
// one named, or else the one whose name is the longest prefix of the URL,
// as SQL Server 2022 does.
func (i *Instance) urlDevice(spec, credName string) (*device, *Error) {
	u, err := url.Parse(spec)
	if err != nil || !strings.EqualFold(u.Scheme, "s3") || u.Host == "" {
		return nil, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 50(The request is not supported.).", spec)
	}
	parts := strings.SplitN(strings.TrimPrefix(u.Path, "/"), "/", 2)
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return nil, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 123(The filename, directory name, or volume label syntax is incorrect.).", spec)
	}
	d := &device{spec: spec, url: true, host: u.Host, bucket: parts[0], key: parts[1]}
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, c := range i.credentials {
		if credName != "" {
			if strings.EqualFold(c.name, credName) {
				d.cred = c
			}
			continue
		}
		if strings.HasPrefix(strings.ToLower(spec), strings.ToLower(strings.TrimRight(c.name, "/"))) &&
			(d.cred == nil || len(c.name) > len(d.cred.name)) {
			d.cred = c
		}
	}
	if d.cred == nil {
		return nil, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 50(The request is not supported.). No credential matches the URL: create one with CREATE CREDENTIAL [s3://host:port/bucket] WITH IDENTITY = 'S3 Access Key', SECRET = 'key:secret'.", spec)
	}
	if !strings.EqualFold(d.cred.identity, "S3 Access Key") {
		return nil, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 5(Access is denied.). The credential's identity must be 'S3 Access Key'.", spec)
	}
	return d, nil
}

// s3 returns a minio client for the device, over TLS with the instance's
// trusted CAs, as SQL Server's S3 connector requires.
func (i *Instance) s3(d *device) (*minio.Core, error) {
	access, secret, ok := strings.Cut(d.cred.secret, ":")
	if !ok {
		return nil, errors.New("credential secret must be 'access_key:secret_key'")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: i.cfg.TrustedCAs, MinVersion: tls.VersionTLS12}
	c, err := minio.NewCore(d.host, &minio.Options{
		Creds:     credentials.NewStaticV4(access, secret, ""),
		Secure:    true,
		Transport: tr,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// osError renders an OS error the way SQL Server's device messages do.
func osError(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "3(The system cannot find the path specified.)"
	case errors.Is(err, fs.ErrPermission):
		return "5(Access is denied.)"
	case errors.Is(err, syscall.ENOSPC):
		return "112(There is not enough space on the disk.)"
	case errors.Is(err, syscall.EISDIR):
		return "5(Access is denied.)"
	}
	return fmt.Sprintf("1117(The request could not be performed because of an I/O device error: %v.)", err)
}

func errOpenDevice(d *device, err error) *Error {
	return newErr(3201, 16, "Cannot open backup device '%s'. Operating system error %s.", d.spec, osError(err))
}

func errWriteDevice(d *device, err error) *Error {
	return newErr(3202, 16, "Write on \"%s\" failed: %s", d.spec, osError(err))
}

// deviceWriter is where one stripe of a backup goes. Abort discards a
// failed backup where the device allows (a file keeps what was written, as
// SQL Server's does; an upload is left unfinished, as SQL Server 2022
// leaves it).
type deviceWriter interface {
	io.Writer
	Commit() error
	Abort()
}

// readSets scans a device for its media header and backup sets. A missing
// file is reported as such; a device that is not a backup as 3241.
func (i *Instance) readSets(ctx context.Context, d *device) (mediaHeader, []backupSet, int64, *Error) {
	r, err := i.openReader(ctx, d, 0)
	if err != nil {
		return mediaHeader{}, nil, 0, errOpenDevice(d, err)
	}
	defer r.Close()
	m, sets, end, err := scanSets(r)
	if err != nil && len(sets) == 0 {
		return m, nil, 0, newErr(3241, 16, "The media family on device '%s' is incorrectly formed. SQL Server cannot process this media family.", d.spec)
	}
	return m, sets, end, nil
}

// openReader opens a device for reading from offset.
func (i *Instance) openReader(ctx context.Context, d *device, offset int64) (io.ReadCloser, error) {
	switch {
	case d.nul:
		return nil, fs.ErrNotExist
	case d.url:
		c, err := i.s3(d)
		if err != nil {
			return nil, err
		}
		opts := minio.GetObjectOptions{}
		if offset > 0 {
			if err := opts.SetRange(offset, 0); err != nil {
				return nil, err
			}
		}
		body, _, _, err := c.GetObject(ctx, d.bucket, d.key, opts)
		if err != nil {
			var er minio.ErrorResponse
			if errors.As(err, &er) && er.StatusCode == http.StatusNotFound {
				return nil, fs.ErrNotExist
			}
			return nil, err
		}
		return body, nil
	default:
		f, err := os.Open(d.path)
		if err != nil {
			return nil, err
		}
		if st, err := f.Stat(); err == nil && st.IsDir() {
			f.Close()
			return nil, syscall.EISDIR
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
}

// fileWriter writes a stripe to a file.
type fileWriter struct {
	f *os.File
}

func (w *fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }
func (w *fileWriter) Commit() error {
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}
func (w *fileWriter) Abort() { w.f.Close() }

type nulWriter struct{}

func (nulWriter) Write(p []byte) (int, error) { return len(p), nil }
func (nulWriter) Commit() error               { return nil }
func (nulWriter) Abort()                      {}

// openFileWriter opens a file to write at offset, truncating what follows.
func openFileWriter(path string, offset int64) (*fileWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(offset); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return &fileWriter{f: f}, nil
}

// uploadWriter writes a stripe as a multipart upload with parts of
// MAXTRANSFERSIZE, as SQL Server 2022's S3 connector does.
type uploadWriter struct {
	ctx      context.Context
	c        *minio.Core
	d        *device
	uploadID string
	partSize int
	buf      bytes.Buffer
	parts    []minio.CompletePart
	fail     func() error // injected upload fault, may be nil
}

const maxURLParts = 10000

func (i *Instance) openUploadWriter(ctx context.Context, d *device, partSize int, fail func() error) (*uploadWriter, error) {
	c, err := i.s3(d)
	if err != nil {
		return nil, err
	}
	id, err := c.NewMultipartUpload(ctx, d.bucket, d.key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return nil, err
	}
	w := &uploadWriter{ctx: ctx, c: c, d: d, uploadID: id, partSize: partSize, fail: fail}
	w.buf.Grow(partSize)
	return w, nil
}

func (w *uploadWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := w.partSize - w.buf.Len()
		k := min(room, len(p))
		w.buf.Write(p[:k])
		p = p[k:]
		if w.buf.Len() == w.partSize {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *uploadWriter) flush() error {
	if w.buf.Len() == 0 {
		return nil
	}
	if len(w.parts) >= maxURLParts {
		return fmt.Errorf("the backup needs more than %d parts of %d bytes; raise MAXTRANSFERSIZE or stripe over more URLs", maxURLParts, w.partSize)
	}
	if w.fail != nil {
		if err := w.fail(); err != nil {
			return err
		}
	}
	num := len(w.parts) + 1
	part, err := w.c.PutObjectPart(w.ctx, w.d.bucket, w.d.key, w.uploadID, num,
		bytes.NewReader(w.buf.Bytes()), int64(w.buf.Len()), minio.PutObjectPartOptions{})
	if err != nil {
		return err
	}
	w.parts = append(w.parts, minio.CompletePart{PartNumber: num, ETag: part.ETag})
	w.buf.Reset()
	return nil
}

func (w *uploadWriter) Commit() error {
	if err := w.flush(); err != nil {
		return err
	}
	_, err := w.c.CompleteMultipartUpload(w.ctx, w.d.bucket, w.d.key, w.uploadID, w.parts, minio.PutObjectOptions{})
	return err
}

// Abort leaves the unfinished upload behind, as SQL Server does.
func (w *uploadWriter) Abort() {}

// objectExists reports whether a URL device's object exists.
func (i *Instance) objectExists(ctx context.Context, d *device) (bool, error) {
	c, err := i.s3(d)
	if err != nil {
		return false, err
	}
	_, err = c.StatObject(ctx, d.bucket, d.key, minio.StatObjectOptions{})
	if err == nil {
		return true, nil
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.StatusCode == http.StatusNotFound || er.Code == "NoSuchKey") {
		return false, nil
	}
	return false, err
}

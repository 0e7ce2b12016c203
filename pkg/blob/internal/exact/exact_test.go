package exact

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReader(t *testing.T) {
	data := []byte("0123456789")
	tests := []struct {
		name    string
		r       io.Reader
		size    int64
		want    string // what a reader that forwards bytes as it reads would pass on
		wantErr bool
	}{
		{"exact", bytes.NewReader(data), 10, "0123456789", false},
		{"exact one byte at a time", iotest.OneByteReader(bytes.NewReader(data)), 10, "0123456789", false},
		{"exact with data and EOF together", iotest.DataErrReader(bytes.NewReader(data)), 10, "0123456789", false},
		{"empty", bytes.NewReader(nil), 0, "", false},
		{"short", bytes.NewReader(data), 11, "0123456789", true},
		// The last declared bytes are never passed on.
		{"long", bytes.NewReader(data), 9, "", true},
		{"long one byte at a time", iotest.OneByteReader(bytes.NewReader(data)), 9, "01234567", true},
		{"zero but not empty", bytes.NewReader(data), 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bytes.Buffer
			_, err := io.Copy(&got, NewReader(context.Background(), tt.r, tt.size))
			if (err != nil) != tt.wantErr {
				t.Errorf("copy error = %v; want error %v", err, tt.wantErr)
			}
			if got.String() != tt.want {
				t.Errorf("passed on %q; want %q", got.String(), tt.want)
			}
		})
	}
}

func TestReaderContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := io.ReadAll(NewReader(ctx, bytes.NewReader([]byte("x")), 1))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("read with a cancelled context: %v; want context.Canceled", err)
	}
}

package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrExist is matched, with errors.Is, by the error [Creator.Create]
// returns for a key that already holds an object.
var ErrExist = errors.New("blob already exists")

// Creator is a Store that can store an object only where there is none:
// the way for processes that share nothing but the store to agree on
// which of them writes an object first.
type Creator interface {
	Store

	// Create stores exactly size bytes read from r under key, as Put
	// does, if key holds no object. If it holds one, Create stores
	// nothing and returns an error matching [ErrExist]. The check and
	// the write are one atomic step: of Creates racing on one key, one
	// succeeds and the others fail with ErrExist. A Create that fails
	// otherwise stores nothing, as a failed Put.
	Create(ctx context.Context, key string, r io.Reader, size int64) error
}

// Create stores the object under key, as store's Create does, if key
// holds none. A store that is not a [Creator] (a decorator that does not
// forward it) is asked with Stat and then Put: that still refuses a key
// already taken with [ErrExist], but two callers racing may both succeed,
// the later one's object replacing the earlier one's. Every backend coffer
// ships, and the retry decorator, is a Creator.
func Create(ctx context.Context, store Store, key string, r io.Reader, size int64) error {
	if c, ok := store.(Creator); ok {
		return c.Create(ctx, key, r, size)
	}
	_, err := store.Stat(ctx, key)
	switch {
	case err == nil:
		return fmt.Errorf("create %s: %w", key, ErrExist)
	case !errors.Is(err, ErrNotExist):
		return fmt.Errorf("create %s: %w", key, err)
	}
	return store.Put(ctx, key, r, size)
}

package migrate

import (
	"context"
	"errors"
	"io"

	"github.com/ferrymigrate/ferry/providers"
)

// errDryRun is what a dry run's stores answer to any write: a dry run that reaches a
// write is a bug, and this makes it fail loudly instead of writing.
var errDryRun = errors.New("dry run: refusing to write")

// dryStore lets reads through and refuses every write. It deliberately implements no
// write capability (ConditionalDeleter, SoftDeleter), so none can be reached through it.
type dryStore struct{ providers.Store }

func (d *dryStore) Put(context.Context, string, io.Reader, int64, providers.PutOptions) (providers.Object, error) {
	return providers.Object{}, errDryRun
}
func (d *dryStore) Delete(context.Context, string) error { return errDryRun }
func (d *dryStore) Unwrap() providers.Store              { return d.Store }

// dryRangeStore is a dryStore over a store that lists by range, so that a dry-run
// plan lists as fast as a real one (listing is a read).
type dryRangeStore struct {
	dryStore
	rl providers.RangeLister
}

func (d *dryRangeStore) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	return d.rl.ListRange(ctx, after, through, fn)
}

func (d *dryRangeStore) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	return d.rl.SplitKeys(ctx, parts)
}

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
// write capability (ConditionalDeleter, SoftDeleter), so none can be reached through
// it; the migration resolves its capabilities as its inner store's without the
// writes (capsOf), so that the read capabilities (ranges, versions) stay.
type dryStore struct{ providers.Store }

func (d *dryStore) Put(context.Context, string, io.Reader, int64, providers.PutOptions) (providers.Object, error) {
	return providers.Object{}, errDryRun
}
func (d *dryStore) Delete(context.Context, string) error { return errDryRun }
func (d *dryStore) Unwrap() providers.Store              { return d.Store }

//go:build !unix

package file

import (
	"errors"
	"io/fs"
	"os"
	"path"

	"github.com/ferrymigrate/ferry/providers"
)

// Without the *at system calls the store still lists, reads and writes through
// os.Root, but cannot soft delete, and ETags carry no inode.

var errNoAt = errors.New("file: soft delete needs a unix system")

func devIno(fs.FileInfo) (dev, ino uint64) { return 0, 0 }

func ctimeOf(fs.FileInfo) int64 { return 0 }

func statAt(d *os.File, name string) (attrs, error) {
	fi, err := os.Lstat(path.Join(d.Name(), name))
	if err != nil {
		return attrs{}, err
	}
	return attrsOf(fi), nil
}

func openNoFollow(r *os.Root, key string) (*os.File, error) {
	fi, err := r.Lstat(key)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, &os.PathError{Op: "open", Path: key, Err: providers.ErrNotSupported}
	}
	return r.Open(key)
}

func renameAt(*os.File, string, *os.File, string) error {
	return errors.Join(errNoAt, providers.ErrNotSupported)
}

func linkAt(*os.File, string, *os.File, string) error {
	return errors.Join(errNoAt, providers.ErrNotSupported)
}

func unlinkAt(*os.File, string) error {
	return errors.Join(errNoAt, providers.ErrNotSupported)
}

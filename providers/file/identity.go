package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferrymigrate/ferry/providers"
)

var _ providers.Identifier = (*Store)(nil)

// Identity is the root with every symlink resolved, and the device and inode of the
// root and of each directory above it: a site that is a symlink to the target, or a
// bind mount of it (or of a directory around it), is the same store.
func (s *Store) Identity(context.Context) (providers.Identity, error) {
	dir, err := filepath.EvalSymlinks(s.dir)
	if err != nil {
		return providers.Identity{}, fmt.Errorf("file: resolve root %s: %w", s.dir, err)
	}
	id := providers.Identity{Kind: "file", Dir: dir}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return providers.Identity{}, fmt.Errorf("file: stat %s: %w", p, err)
		}
		if dev, ino := devIno(fi); dev != 0 || ino != 0 {
			id.Nodes = append(id.Nodes, providers.FileNode{Dev: dev, Ino: ino})
		}
		if filepath.Dir(p) == p {
			break
		}
	}
	return id, nil
}

// Watching the directory: Watch and Dir.Check.
//
// A Dir notices when a database's directory stops being the one
// the process opened: removed, renamed away or replaced (an operator's
// rm -rf, a volume unmounted or remounted under the running process).
//
// Badger keeps writing into the files it holds open, and their fsyncs
// succeed, but once the directory is gone those files are unreachable: a
// restart opens another (or no) directory, and whatever was written since
// is lost. So a write that a reply will call durable must be checked
// against the directory's identity (device and inode) before and after it
// is committed; the check is one stat(2).

package datadir

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrGone: the directory was removed or replaced since it was opened.
var ErrGone = errors.New("data directory removed or replaced")

// Dir is a directory's identity when it was opened.
type Dir struct {
	path     string
	dev, ino uint64
}

// Watch records the identity of the directory at path.
func Watch(path string) (*Dir, error) {
	dev, ino, err := identity(path)
	if err != nil {
		return nil, fmt.Errorf("datadir: %w", err)
	}
	return &Dir{path: path, dev: dev, ino: ino}, nil
}

// Check returns an error wrapping ErrGone unless path still names the
// directory that Watch saw.
func (d *Dir) Check() error {
	dev, ino, err := identity(d.path)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrGone, d.path, err)
	}
	if dev != d.dev || ino != d.ino {
		return fmt.Errorf("%w: %s is another directory than the one opened", ErrGone, d.path)
	}
	return nil
}

func identity(path string) (dev, ino uint64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() {
		return 0, 0, fmt.Errorf("%s: not a directory", path)
	}
	return uint64(st.Dev), st.Ino, nil
}

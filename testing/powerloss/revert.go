package powerloss

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// where is a node of the backing directory: its path and type.
type where struct {
	path string
	mode uint32
}

// revert rebuilds live/ from the synced state, while unmounted: a new tree
// is built next to it by moving the synced nodes into it, then replaces it.
func (f *FS) revert() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	nodes := make(map[uint64]where)
	for _, top := range []string{f.live(), f.atticDir()} {
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			st, err := lstatIno(p)
			if err != nil {
				return err
			}
			if p != f.atticDir() {
				nodes[st.Ino] = where{path: p, mode: st.Mode & syscall.S_IFMT}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("powerloss: reverting: %w", err)
		}
	}
	root, err := lstatIno(f.live())
	if err != nil {
		return fmt.Errorf("powerloss: reverting: %w", err)
	}
	next := filepath.Join(f.backing, "next")
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("powerloss: reverting: %w", err)
	}
	if err := os.Mkdir(next, 0o755); err != nil {
		return fmt.Errorf("powerloss: reverting: %w", err)
	}
	placed := make(map[uint64]string)
	var build func(ino uint64, dst string) error
	build = func(ino uint64, dst string) error {
		entries, err := f.syncedEntries(ino, nodes)
		if err != nil {
			return err
		}
		for name, child := range entries {
			w, ok := nodes[child]
			if !ok {
				return fmt.Errorf("powerloss: reverting: synced entry %s names inode %d, which is gone", filepath.Join(dst, name), child)
			}
			to := filepath.Join(dst, name)
			if w.mode == syscall.S_IFDIR {
				if err := os.Mkdir(to, 0o755); err != nil {
					return err
				}
				if st, err := os.Stat(w.path); err == nil {
					os.Chmod(to, st.Mode().Perm())
				}
				if err := build(child, to); err != nil {
					return err
				}
				continue
			}
			if prev, ok := placed[child]; ok { // another hard link
				if err := os.Link(prev, to); err != nil {
					return err
				}
				continue
			}
			if w.mode == syscall.S_IFREG {
				if err := f.restoreFile(child, w.path); err != nil {
					return err
				}
			}
			if err := os.Rename(w.path, to); err != nil {
				return err
			}
			placed[child] = to
		}
		return nil
	}
	if err := build(root.Ino, next); err != nil {
		return fmt.Errorf("powerloss: reverting: %w", err)
	}
	lost := 0
	for ino, w := range nodes {
		if _, ok := placed[ino]; !ok && w.mode != syscall.S_IFDIR {
			lost++
		}
	}
	f.stats.LostNames += lost
	f.stats.LostFiles += len(f.files)
	if err := os.RemoveAll(f.live()); err != nil {
		return fmt.Errorf("powerloss: reverting: %w", err)
	}
	if err := os.RemoveAll(f.atticDir()); err != nil {
		return fmt.Errorf("powerloss: reverting: %w", err)
	}
	if err := os.Mkdir(f.atticDir(), 0o755); err != nil {
		return fmt.Errorf("powerloss: reverting: %w", err)
	}
	if err := os.Rename(next, f.live()); err != nil {
		return fmt.Errorf("powerloss: reverting: %w", err)
	}
	return nil
}

// syncedEntries returns a directory's synced entries: those recorded, or,
// for a directory unchanged since the mount, those it has.
func (f *FS) syncedEntries(ino uint64, nodes map[uint64]where) (map[string]uint64, error) {
	if d := f.dirs[ino]; d != nil {
		return d.entries, nil
	}
	w, ok := nodes[ino]
	if !ok {
		return nil, fmt.Errorf("directory inode %d is gone", ino)
	}
	return listing(w.path)
}

// restoreFile gives the file at p its synced content.
func (f *FS) restoreFile(ino uint64, p string) error {
	s := f.files[ino]
	if s == nil {
		return nil // unchanged since the mount, or synced
	}
	file, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer file.Close()
	zero := make([]byte, blockSize)
	for b, data := range s.undo {
		if data == nil {
			data = zero[:min(blockSize, s.size-b*blockSize)]
		}
		if _, err := file.WriteAt(data, b*blockSize); err != nil {
			return err
		}
	}
	return file.Truncate(s.size)
}

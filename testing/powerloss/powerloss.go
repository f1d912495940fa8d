// Package powerloss is a FUSE file system that models what a power cut
// takes from a POSIX file system, the way Jepsen's LazyFS does, so that
// tests can check that nothing acknowledged depends on data the disk had
// not made durable.
//
// # Model
//
// An FS passes every operation through to a real directory (the backing
// directory) and remembers, next to it, what a power cut would leave:
//
//   - For each file, its content as of its last fsync (or fdatasync, or
//     msync, which reaches the file system as fsync). Writes reach the
//     backing file at once; the FS keeps the overwritten blocks of the
//     synced content (an undo log) and the synced size.
//   - For each directory, its entries as of its last fsync. Creating,
//     renaming, linking or removing a name changes the backing directory
//     at once; the FS keeps the entries the directory had at its last
//     fsync (or when it was first changed after the mount). A removed
//     file or directory is kept aside, out of sight, while a synced entry
//     may still name it.
//
// Writes through a shared memory mapping reach the FS when the kernel
// writes the dirty pages back (at msync, at fsync, or whenever it likes);
// the mount does not use direct I/O, so mmap works as on a disk file
// system.
//
// [FS.Cut] is the power cut: from that moment nothing more becomes durable
// (fsyncs still succeed, the processes using the files do not notice).
// [FS.Restart] then unmounts (after those processes have exited or closed
// their files), rebuilds the backing directory from the remembered state
// — every directory holds exactly its synced entries, every file its
// synced content, a file that was never synced is empty — and mounts it
// again. What a test finds after Restart is what the disk would hold after
// the power came back.
//
// The model is strict on purpose: ext4 and XFS commit directory entries
// with any later fsync through their journal, which hides a missing
// directory sync; this FS does not.
//
// Metadata other than names and sizes (modes, times, extended attributes)
// is not modelled: it survives as it is. Hard links are modelled per
// directory entry like any other name.
//
// The FS serves from the process that mounts it. A program that maps
// files of the mount into memory must run in another process: its page
// faults wait for the FS, which cannot answer while the Go runtime has
// stopped the world for the faulting process's garbage collector.
//
// Mounting needs /dev/fuse and the right to mount (root, or fusermount3).
// [New] skips the test when they are missing, and fails it when the
// environment variable CI is "true".
package powerloss

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// blockSize is the granularity of the undo log.
const blockSize = 4096

// FS is a mounted power-loss file system. Its methods are safe for
// concurrent use with the file operations on the mount.
type FS struct {
	backing string // holds live/ (the mounted tree) and attic/ (removed nodes)
	mnt     string
	server  *fuse.Server

	mu     sync.Mutex
	frozen bool
	files  map[uint64]*fileState // by backing inode number
	dirs   map[uint64]*dirState
	attic  int // names handed out in attic/
	stats  Stats
}

// Stats counts what the FS saw since it was created.
type Stats struct {
	FileSyncs, DirSyncs, Writes, Cuts int
	// Lost counts what the cuts undid: names whose creation, rename or
	// removal was not synced, and files whose content changed since their
	// last sync.
	LostNames, LostFiles int
}

// fileState is the synced content of a file that changed since the mount.
type fileState struct {
	size int64            // synced size
	undo map[int64][]byte // block index → synced bytes (nil: zeros)
}

// dirState is the synced entries of a directory that changed since the
// mount: name → backing inode number.
type dirState struct {
	entries map[string]uint64
}

// Mount mounts a power-loss FS over backing at mnt. backing must be an
// empty or missing directory, or one a previous FS left; mnt must exist.
func Mount(backing, mnt string) (*FS, error) {
	if err := os.MkdirAll(filepath.Join(backing, "live"), 0o755); err != nil {
		return nil, fmt.Errorf("powerloss: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(backing, "attic"), 0o755); err != nil {
		return nil, fmt.Errorf("powerloss: %w", err)
	}
	f := &FS{backing: backing, mnt: mnt}
	if err := f.mount(); err != nil {
		return nil, err
	}
	return f, nil
}

// Dir is the mount point: the directory the code under test uses.
func (f *FS) Dir() string { return f.mnt }

// Stats returns the counters.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

func (f *FS) live() string     { return filepath.Join(f.backing, "live") }
func (f *FS) atticDir() string { return filepath.Join(f.backing, "attic") }

func (f *FS) mount() error {
	f.files = make(map[uint64]*fileState)
	f.dirs = make(map[uint64]*dirState)
	f.frozen = false
	var st syscall.Stat_t
	if err := syscall.Stat(f.live(), &st); err != nil {
		return fmt.Errorf("powerloss: %w", err)
	}
	root := &fs.LoopbackRoot{Path: f.live(), Dev: uint64(st.Dev)}
	root.NewNode = func(r *fs.LoopbackRoot, parent *fs.Inode, name string, st *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, fs: f}
	}
	root.RootNode = root.NewNode(root, nil, "", &st)
	timeout := time.Second
	srv, err := fs.Mount(f.mnt, root.RootNode, &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:        "powerloss",
			Name:          "powerloss",
			DirectMount:   true,
			DisableXAttrs: true,
			MaxWrite:      1 << 20,
		},
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
	})
	if err != nil {
		return fmt.Errorf("powerloss: mounting %s: %w", f.mnt, err)
	}
	f.server = srv
	return nil
}

// Cut cuts the power: from now until Restart, nothing becomes durable.
func (f *FS) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.frozen {
		f.frozen = true
		f.stats.Cuts++
	}
}

// Restart unmounts the FS, reverts the backing directory to what the disk
// held at the cut (Cut is implied if it was not called), and mounts it
// again. Every process using the mount must have exited or closed its
// files; Restart retries the unmount for up to ctx's deadline (or ten
// seconds) while they finish.
func (f *FS) Restart(ctx context.Context) error {
	f.Cut()
	if err := f.unmount(ctx); err != nil {
		return err
	}
	if err := f.revert(); err != nil {
		return err
	}
	return f.mount()
}

// Close unmounts the FS, leaving the backing directory as it is.
func (f *FS) Close() error {
	if f.server == nil {
		return nil
	}
	return f.unmount(context.Background())
}

func (f *FS) unmount(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	for {
		err := f.server.Unmount()
		if err == nil {
			f.server.Wait()
			f.server = nil
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("powerloss: unmounting %s (is a process still using it?): %w", f.mnt, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ErrUnavailable is returned by Available when FUSE cannot be used here.
var ErrUnavailable = errors.New("powerloss: FUSE is not available")

// Available reports whether this machine can mount a FUSE file system.
func Available() error {
	d, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	d.Close()
	if os.Geteuid() != 0 {
		for _, p := range []string{"/usr/bin/fusermount3", "/bin/fusermount3", "/usr/bin/fusermount", "/bin/fusermount"} {
			if _, err := os.Stat(p); err == nil {
				return nil
			}
		}
		return fmt.Errorf("%w: not root and no fusermount3", ErrUnavailable)
	}
	return nil
}

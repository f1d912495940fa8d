package powerloss

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a loopback node that records, before each change, what the
// model needs to undo it (see the package doc). Every change runs under
// FS.mu, so the record and the change are one step.
type node struct {
	fs.LoopbackNode
	fs *FS
}

var (
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.NodeAllocater      = (*node)(nil)
	_ fs.FileWriter         = (*file)(nil)
	_ fs.FileFsyncer        = (*file)(nil)
	_ fs.FileFsyncdirer     = (*dirHandle)(nil)
	_ fs.FileReaddirenter   = (*dirHandle)(nil)
)

// path is the node's path in the backing directory.
func (n *node) path() string {
	return filepath.Join(n.RootData.Path, n.Path(n.RootData.RootNode.EmbeddedInode()))
}

func lstatIno(p string) (syscall.Stat_t, error) {
	var st syscall.Stat_t
	err := syscall.Lstat(p, &st)
	return st, err
}

// listing returns a directory's entries: name → inode number.
func listing(dir string) (map[string]uint64, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	m := make(map[string]uint64, len(names))
	for _, name := range names {
		st, err := lstatIno(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		m[name] = st.Ino
	}
	return m, nil
}

// touchDir records dir's synced entries before its first change since the
// mount (they are its entries now). f.mu must be held.
func (f *FS) touchDir(dir string) syscall.Errno {
	st, err := lstatIno(dir)
	if err != nil {
		return fs.ToErrno(err)
	}
	if f.dirs[st.Ino] != nil {
		return 0
	}
	m, err := listing(dir)
	if err != nil {
		return fs.ToErrno(err)
	}
	f.dirs[st.Ino] = &dirState{entries: m}
	return 0
}

// touchFile returns the synced state of the file with stat st, recording it
// before the file's first change since the mount. f.mu must be held.
func (f *FS) touchFile(st *syscall.Stat_t) *fileState {
	s := f.files[st.Ino]
	if s == nil {
		s = &fileState{size: st.Size, undo: make(map[int64][]byte)}
		f.files[st.Ino] = s
	}
	return s
}

// save keeps the synced bytes of the blocks of [off, end) before they are
// overwritten or truncated away, read through fd.
func (f *FS) save(fd int, s *fileState, off, end int64) syscall.Errno {
	end = min(end, s.size)
	if off >= end {
		return 0
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	cur := st.Size // the file now; preads past it find nothing
	keep := func(b int64, buf []byte) {
		if _, ok := s.undo[b]; !ok {
			s.undo[b] = buf
		}
	}
	zero := make([]byte, blockSize)
	for b := off / blockSize; b*blockSize < end; b++ {
		start := b * blockSize
		if start >= cur {
			// Past the file's current end: a pread would read nothing.
			for ; b*blockSize < end; b++ {
				keep(b, []byte{})
			}
			break
		}
		// Skip a hole without reading it (badger preallocates files of
		// gigabytes sparsely): its whole blocks read as zeros.
		d, err := unix.Seek(fd, start, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			d, err = cur, nil
		}
		if err == nil && d > start {
			first := b
			stop := min(d, cur) / blockSize // the first block not wholly in the hole
			for ; b < stop && b*blockSize < end && min(blockSize, s.size-b*blockSize) == blockSize; b++ {
				keep(b, nil)
			}
			if b > first {
				b-- // the loop's b++ brings it back to the first block not done
				continue
			}
		}
		if _, ok := s.undo[b]; ok {
			continue
		}
		n := min(blockSize, s.size-b*blockSize)
		buf := make([]byte, n)
		got, err := syscall.Pread(fd, buf, b*blockSize)
		if err != nil {
			return fs.ToErrno(err)
		}
		buf = buf[:got] // a file truncated since its sync has fewer
		if bytes.Equal(buf, zero[:len(buf)]) && int64(got) == n {
			buf = nil
		}
		s.undo[b] = buf
	}
	return 0
}

// truncating records the synced bytes that a truncation of the file at p
// (or open fd, if fd >= 0) to size would take away.
func (f *FS) truncating(p string, fd int, size int64) syscall.Errno {
	var st syscall.Stat_t
	var err error
	if fd >= 0 {
		err = syscall.Fstat(fd, &st)
	} else {
		err = syscall.Lstat(p, &st)
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return 0
	}
	s := f.touchFile(&st)
	if size >= s.size {
		return 0
	}
	if fd < 0 {
		fd, err = syscall.Open(p, syscall.O_RDONLY, 0)
		if err != nil {
			return fs.ToErrno(err)
		}
		defer syscall.Close(fd)
	}
	return f.save(fd, s, size, s.size)
}

// moveToAttic removes the name p from the tree, keeping the node in the
// attic for the cut that may bring the name back.
func (f *FS) moveToAttic(p string) syscall.Errno {
	f.attic++
	return fs.ToErrno(os.Rename(p, filepath.Join(f.atticDir(), strconv.Itoa(f.attic))))
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	f := n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := n.path()
	if e := f.touchDir(dir); e != 0 {
		return nil, nil, 0, e
	}
	p := filepath.Join(dir, name)
	_, err := lstatIno(p)
	existed := err == nil
	if existed && flags&syscall.O_TRUNC != 0 {
		if e := f.truncating(p, -1, 0); e != 0 {
			return nil, nil, 0, e
		}
	}
	ch, fh, _, e := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if e != 0 {
		return nil, nil, 0, e
	}
	fh.(fs.FileReleaser).Release(ctx)
	h, err := openFile(p, flags&^(syscall.O_CREAT|syscall.O_EXCL|syscall.O_TRUNC))
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	if !existed {
		st, err := lstatIno(p)
		if err != nil {
			return nil, nil, 0, fs.ToErrno(err)
		}
		f.files[st.Ino] = &fileState{size: 0, undo: make(map[int64][]byte)}
	}
	h.fs = f
	return ch, h, 0, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	f := n.fs
	if flags&syscall.O_TRUNC != 0 {
		f.mu.Lock()
		defer f.mu.Unlock()
		if e := f.truncating(n.path(), -1, 0); e != 0 {
			return nil, 0, e
		}
	}
	h, err := openFile(n.path(), flags)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	h.fs = f
	return h, 0, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := n.path()
	if e := f.touchDir(dir); e != 0 {
		return nil, e
	}
	ch, e := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if e != 0 {
		return nil, e
	}
	st, err := lstatIno(filepath.Join(dir, name))
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	f.dirs[st.Ino] = &dirState{entries: map[string]uint64{}}
	return ch, 0
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := n.path()
	if e := f.touchDir(dir); e != 0 {
		return nil, e
	}
	ch, e := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if e != 0 {
		return nil, e
	}
	if st, err := lstatIno(filepath.Join(dir, name)); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG {
		f.files[st.Ino] = &fileState{undo: make(map[int64][]byte)}
	}
	return ch, 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.touchDir(n.path()); e != 0 {
		return nil, e
	}
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.touchDir(n.path()); e != 0 {
		return nil, e
	}
	return n.LoopbackNode.Link(ctx, target, name, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	f := n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := n.path()
	if e := f.touchDir(dir); e != 0 {
		return e
	}
	p := filepath.Join(dir, name)
	st, err := lstatIno(p)
	if err != nil {
		return fs.ToErrno(err)
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return syscall.EISDIR
	}
	return f.moveToAttic(p)
}

func isEmptyDir(p string) (bool, error) {
	d, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	return len(names) == 0, nil
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	f := n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := n.path()
	if e := f.touchDir(dir); e != 0 {
		return e
	}
	p := filepath.Join(dir, name)
	st, err := lstatIno(p)
	if err != nil {
		return fs.ToErrno(err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return syscall.ENOTDIR
	}
	if empty, err := isEmptyDir(p); err != nil {
		return fs.ToErrno(err)
	} else if !empty {
		return syscall.ENOTEMPTY
	}
	return f.moveToAttic(p)
}

const (
	renameNoReplace = 1 << 0
	renameExchange  = 1 << 1
)

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	f := n.fs
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^renameNoReplace != 0 {
		return syscall.EINVAL
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	from, to := n.path(), np.path()
	if e := f.touchDir(from); e != 0 {
		return e
	}
	if e := f.touchDir(to); e != 0 {
		return e
	}
	src, dst := filepath.Join(from, name), filepath.Join(to, newName)
	sst, err := lstatIno(src)
	if err != nil {
		return fs.ToErrno(err)
	}
	if dstat, err := lstatIno(dst); err == nil {
		switch {
		case flags&renameNoReplace != 0:
			return syscall.EEXIST
		case dstat.Ino == sst.Ino:
			return 0 // the same file: rename(2) does nothing
		case sst.Mode&syscall.S_IFMT == syscall.S_IFDIR && dstat.Mode&syscall.S_IFMT != syscall.S_IFDIR:
			return syscall.ENOTDIR
		case sst.Mode&syscall.S_IFMT != syscall.S_IFDIR && dstat.Mode&syscall.S_IFMT == syscall.S_IFDIR:
			return syscall.EISDIR
		case dstat.Mode&syscall.S_IFMT == syscall.S_IFDIR:
			if empty, err := isEmptyDir(dst); err != nil {
				return fs.ToErrno(err)
			} else if !empty {
				return syscall.ENOTEMPTY
			}
		}
		if e := f.moveToAttic(dst); e != 0 {
			return e
		}
	}
	return fs.ToErrno(os.Rename(src, dst))
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, ok := in.GetSize()
	if !ok {
		return n.LoopbackNode.Setattr(ctx, unwrap(fh), in, out)
	}
	f := n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	fd := -1
	if h, ok := fh.(*file); ok {
		fd = h.fd()
	}
	if e := f.truncating(n.path(), fd, int64(size)); e != 0 {
		return e
	}
	f.stats.Writes++
	return n.LoopbackNode.Setattr(ctx, unwrap(fh), in, out)
}

// unwrap hides the open file from the loopback's Setattr, which then
// works on the path.
func unwrap(fh fs.FileHandle) fs.FileHandle {
	if _, ok := fh.(*file); ok {
		return nil
	}
	return fh
}

func openFile(p string, flags uint32) (*file, error) {
	flags &^= syscall.O_APPEND | fuse.FMODE_EXEC
	f, err := os.OpenFile(p, int(flags)|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	return &file{f: f}, nil
}

// CopyFileRange is refused, so that the kernel copies through Write.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Allocate is refused: the model does not follow fallocate's modes.
func (n *node) Allocate(ctx context.Context, fh fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	return syscall.EOPNOTSUPP
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h, fl, e := n.LoopbackNode.OpendirHandle(ctx, flags)
	if e != 0 {
		return nil, 0, e
	}
	return &dirHandle{h: h, n: n}, fl, 0
}

// file is an open file. It does its own I/O on the backing file: a
// handle that offered the kernel a passthrough descriptor would let it
// write around the model.
type file struct {
	f  *os.File
	fs *FS
}

func (h *file) fd() int { return int(h.f.Fd()) }

func (h *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := syscall.Pread(h.fd(), buf, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(buf[:n]), 0
}

func (h *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f := h.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	fd := h.fd()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, fs.ToErrno(err)
	}
	s := f.touchFile(&st)
	if e := f.save(fd, s, off, off+int64(len(data))); e != 0 {
		return 0, e
	}
	f.stats.Writes++
	n, err := syscall.Pwrite(fd, data, off)
	return uint32(max(n, 0)), fs.ToErrno(err)
}

func (h *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f := h.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen {
		return 0
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(h.fd(), &st); err != nil {
		return fs.ToErrno(err)
	}
	delete(f.files, st.Ino) // the content now is the synced content
	f.stats.FileSyncs++
	return 0
}

func (h *file) Flush(ctx context.Context) syscall.Errno { return 0 }

func (h *file) Release(ctx context.Context) syscall.Errno { return fs.ToErrno(h.f.Close()) }

func (h *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(h.fd(), &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (h *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(h.fd(), int64(off), int(whence))
	return uint64(n), fs.ToErrno(err)
}

// dirHandle is an open directory; its Fsyncdir makes the entries durable.
type dirHandle struct {
	h fs.FileHandle
	n *node
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	return d.h.(fs.FileReaddirenter).Readdirent(ctx)
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.h.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.h.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	f := d.n.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen {
		return 0
	}
	dir := d.n.path()
	st, err := lstatIno(dir)
	if err != nil {
		return fs.ToErrno(err)
	}
	m, err := listing(dir)
	if err != nil {
		return fs.ToErrno(err)
	}
	f.dirs[st.Ino] = &dirState{entries: m}
	f.stats.DirSyncs++
	return 0
}

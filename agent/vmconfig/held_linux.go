//go:build linux

package vmconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/agent/measure"
)

// Held is the set of image files Resolve opened once, hashed through their
// descriptors and kept open (ResolveOptions.Hold), so that the VMM can be
// given the very descriptors that were measured instead of paths that may
// name other files by the time it opens them.
//
//   - Each path is resolved (symlinks followed, the result reported in
//     HeldImage.Real) and the result opened with O_NOFOLLOW: what is opened
//     is a file, never a link that changed in between.
//   - Disk images are opened read-write (the guest writes its disks);
//     loader, kernel, initrd and variables template are copied while they are hashed into a sealed
//     memfd (no writes, no resizing, seals locked), so the bytes the VMM
//     loads are the bytes hashed, whatever happens to the file.
//   - An image writable by others (mode o+w) is refused, and so is a disk
//     image that changes while it is hashed.
//
// Not guaranteed: a process that may write a disk image (its owner, root)
// can still change it in place after it was hashed; Recheck, run just
// before the launch, finds such a change (and refuses), but one made after
// Recheck, while the VMM runs, is the guest's disk being written.
type Held struct {
	Images []*HeldImage
	// StandIns, if set, lets a claimed digest stand in for an image the
	// agent may not read (the libvirt hook, where libvirt opens the files):
	// the image is then recorded with its identity (StatID) and no File.
	StandIns bool
	// ReadOnly opens disk images read-only too (the libvirt hook, which
	// hands no descriptor on); otherwise they are opened read-write for the
	// VMM.
	ReadOnly bool
	byPath   map[string]*HeldImage
}

// HeldImage is one held image.
type HeldImage struct {
	Role   string   // the disk target ("vda"), "loader" or "kernel"
	Path   string   // as configured, cleaned (relative paths joined to ResolveOptions.Dir)
	Real   string   // Path with every symlink resolved: the file opened
	File   *os.File // nil for a stand-in (Held.StandIns)
	Sealed bool     // File is a sealed memfd holding a copy of the image
	Digest measure.Digest
	// ID is the file's identity and times when it was hashed (for a
	// sealed copy: the original file's).
	ID FileID
}

// FileID is what identifies a file and shows it changed: device, inode,
// size, modification and status-change times.
type FileID struct {
	Dev, Ino     uint64
	Size         int64
	Mtime, Ctime syscall.Timespec
}

func fileID(st *syscall.Stat_t) FileID {
	return FileID{Dev: st.Dev, Ino: st.Ino, Size: st.Size, Mtime: st.Mtim, Ctime: st.Ctim}
}

// StatID returns the FileID of the file at path (following symlinks).
func StatID(path string) (FileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return FileID{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return fileID(&st), nil
}

// Close closes every held descriptor.
func (h *Held) Close() error {
	var errs []error
	for _, im := range h.Images {
		if im.File != nil {
			errs = append(errs, im.File.Close())
		}
	}
	return errors.Join(errs...)
}

// Image returns the held image of role ("vda", "loader", "kernel"), or nil.
func (h *Held) Image(role string) *HeldImage {
	for _, im := range h.Images {
		if im.Role == role {
			return im
		}
	}
	return nil
}

// Recheck checks, through each held descriptor, that no disk image changed
// in place since it was hashed: if its size, mtime or ctime differ (a
// write changes the ctime, which cannot be set back; so does an unlink or
// rename of the path), it hashes the descriptor's content again and
// refuses a different digest. Sealed copies cannot change. It also reports
// the paths that now name another file than the one held (moved,
// replaced): harmless for a VMM given the descriptors, fatal for one that
// opens the paths.
func (h *Held) Recheck(ctx context.Context) (moved []string, err error) {
	for _, im := range h.Images {
		if im.File == nil {
			return nil, fmt.Errorf("%s: the agent holds no descriptor of it (its digest was claimed, not measured)", im.Path)
		}
		if !im.Sealed {
			var st syscall.Stat_t
			if err := syscall.Fstat(int(im.File.Fd()), &st); err != nil {
				return nil, fmt.Errorf("%s: %w", im.Path, err)
			}
			if fileID(&st) != im.ID {
				d, _, err := measure.HashImage(ctxReader{ctx, io.NewSectionReader(im.File, 0, 1<<62)}, nil)
				if err != nil {
					return nil, fmt.Errorf("hashing %s again: %w", im.Path, err)
				}
				if d != im.Digest {
					return nil, fmt.Errorf("%w: %s now hashes to %s, not %s", ErrImageChanged, im.Path, d, im.Digest)
				}
			}
		}
		if now, err := StatID(im.Path); err != nil || now.Dev != im.ID.Dev || now.Ino != im.ID.Ino {
			moved = append(moved, im.Path)
		}
	}
	return moved, nil
}

// open opens path for role, once per path, and returns a reader over its
// whole content and a function that finishes the hold once the content was
// read (seals the copy, checks the file did not change).
func (h *Held) open(path, role string) (io.ReadCloser, int64, func(measure.Digest) error, error) {
	if h.byPath == nil {
		h.byPath = map[string]*HeldImage{}
	}
	if _, ok := h.byPath[path]; ok {
		return nil, 0, nil, fmt.Errorf("%s: named twice; each image file is given to the VMM once", path)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, 0, nil, err
	}
	disk := !sealedRole(role)
	flags := os.O_RDONLY
	if disk && !h.ReadOnly && !strings.Contains(role, ".backing") {
		// A backing image is read-only to the VMM: only the top image is written.
		flags = os.O_RDWR
	}
	f, err := os.OpenFile(real, flags|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, 0, nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	mode := st.Mode & syscall.S_IFMT
	if mode != syscall.S_IFREG && mode != syscall.S_IFBLK {
		f.Close()
		return nil, 0, nil, fmt.Errorf("%s is not a regular file or block device", real)
	}
	if st.Mode&0o002 != 0 {
		f.Close()
		return nil, 0, nil, fmt.Errorf("%w: %s has mode %04o; run chmod o-w %s", ErrWritableByOthers, real, st.Mode&0o7777, real)
	}
	im := &HeldImage{Role: role, Path: path, Real: real, File: f, ID: fileID(&st)}
	size := st.Size
	if mode != syscall.S_IFREG {
		size = -1
	}
	var r io.Reader = io.NewSectionReader(f, 0, 1<<62)
	var mem *os.File
	if !disk {
		fd, err := unix.MemfdCreate("vmledger-"+role, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			f.Close()
			return nil, 0, nil, fmt.Errorf("memfd for %s: %w", path, err)
		}
		mem = os.NewFile(uintptr(fd), "memfd:vmledger-"+role)
		r = io.TeeReader(r, mem)
	}
	finish := func(d measure.Digest) error {
		var after syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &after); err != nil {
			return err
		}
		if fileID(&after) != im.ID {
			return fmt.Errorf("%w: %s changed while it was hashed", ErrImageChanged, real)
		}
		im.Digest = d
		if mem != nil {
			seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
			if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, seals); err != nil {
				return fmt.Errorf("sealing the copy of %s: %w", path, err)
			}
			if _, err := mem.Seek(0, io.SeekStart); err != nil {
				return err
			}
			f.Close()
			im.File, im.Sealed = mem, true
		}
		h.byPath[path] = im
		h.Images = append(h.Images, im)
		return nil
	}
	closer := func() error {
		if _, held := h.byPath[path]; !held {
			if mem != nil {
				mem.Close()
			}
			return f.Close()
		}
		return nil
	}
	return readCloser{r, closer}, size, finish, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// sealedRole reports whether the image of role is copied into a sealed
// memfd when held (boot files QEMU reads once) rather than held as a disk.
func sealedRole(role string) bool {
	switch role {
	case "loader", "kernel", "initrd", "nvram-template":
		return true
	}
	return false
}

// EnvName is the environment variable `agent launch` sets to the number of
// the descriptor of the held image of role: VMLEDGER_FD_VDA, VMLEDGER_FD_LOADER.
func EnvName(role string) string {
	return "VMLEDGER_FD_" + strings.ToUpper(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, role))
}

// ImageRecord is what the libvirt hook keeps of an image it measured, to
// check at later hook calls that the path still names that file: libvirt,
// not the agent, opens the images, by path.
type ImageRecord struct {
	Role    string `json:"role"`
	Path    string `json:"path"`
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
}

// standIn records an image the agent may not read, whose claimed digest
// stands in for it.
func (h *Held) standIn(path, role string, d measure.Digest) error {
	id, err := StatID(path)
	if err != nil {
		return err
	}
	if h.byPath == nil {
		h.byPath = map[string]*HeldImage{}
	}
	im := &HeldImage{Role: role, Path: path, Real: path, Digest: d, ID: id}
	h.byPath[path] = im
	h.Images = append(h.Images, im)
	return nil
}

func record(role, path string, id FileID) ImageRecord {
	return ImageRecord{Role: role, Path: path, Dev: id.Dev, Ino: id.Ino, Size: id.Size,
		MtimeNs: id.Mtime.Nano(), CtimeNs: id.Ctime.Nano()}
}

// Records returns a record of each held image, its identity as it was
// when it was hashed.
func (h *Held) Records() []ImageRecord {
	var out []ImageRecord
	for _, im := range h.Images {
		out = append(out, record(im.Role, im.Path, im.ID))
	}
	return out
}

// RecheckMode says what CheckRecords compares.
type RecheckMode int

const (
	// RecheckContent (libvirt's "started", before the guest ran): the
	// path names the same file (device, inode) with the same size and
	// mtime. The ctime is not compared: libvirt's security drivers change
	// the owner or label of every image at start, which sets it.
	RecheckContent RecheckMode = iota
	// RecheckIdentity (libvirt's "release", after the guest ran and wrote
	// its disks): the path still names the same file.
	RecheckIdentity
)

// CheckRecords checks the files at the records' paths against them.
func CheckRecords(recs []ImageRecord, mode RecheckMode) error {
	var errs []error
	for _, r := range recs {
		id, err := StatID(r.Path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s (%s): %w", ErrImageChanged, r.Path, r.Role, err))
			continue
		}
		now := record(r.Role, r.Path, id)
		switch {
		case now.Dev != r.Dev || now.Ino != r.Ino:
			errs = append(errs, fmt.Errorf("%w: %s (%s) is another file now (device %d inode %d, measured device %d inode %d)", ErrImageChanged, r.Path, r.Role, now.Dev, now.Ino, r.Dev, r.Ino))
		case mode == RecheckContent && (now.Size != r.Size || now.MtimeNs != r.MtimeNs):
			errs = append(errs, fmt.Errorf("%w: %s (%s) was modified (size %d→%d, mtime changed: %v)", ErrImageChanged, r.Path, r.Role, r.Size, now.Size, now.MtimeNs != r.MtimeNs))
		}
	}
	return errors.Join(errs...)
}

// CheckOpenBy checks that process pid (the VMM libvirt started) holds open
// the very files measured for each disk of recs: libvirt opened them by
// path, and a file swapped in for that open and swapped back afterwards
// passes CheckRecords but not this. Loader, kernel, initrd and variables template are not checked
// (QEMU may read and close them).
func CheckOpenBy(recs []ImageRecord, pid int) error {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("the VMM's open files: %w", err)
	}
	type key struct{ dev, ino uint64 }
	open := map[key]bool{}
	for _, e := range ents {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(dir, e.Name()), &st) == nil {
			open[key{st.Dev, st.Ino}] = true
		}
	}
	var errs []error
	for _, r := range recs {
		if sealedRole(r.Role) {
			continue // QEMU reads boot files and may close them; libvirt copies the variables template
		}
		if !open[key{r.Dev, r.Ino}] {
			errs = append(errs, fmt.Errorf("%w: the VMM (pid %d) does not hold the measured file of %s (%s, device %d inode %d) open", ErrImageChanged, pid, r.Role, r.Path, r.Dev, r.Ino))
		}
	}
	return errors.Join(errs...)
}

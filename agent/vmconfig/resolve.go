package vmconfig

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vmledger/vmledger/agent/measure"
)

// ResolveOptions says how Resolve reads image files.
type ResolveOptions struct {
	// Dir is the directory relative image paths are taken from (the
	// configuration file's directory); "" means the working directory.
	Dir string
	// Open opens an image file for reading and reports its size (-1 if
	// unknown). nil means os.Open.
	Open func(path string) (io.ReadCloser, int64, error)
	// Progress, if not nil, is called as each file is hashed: before the
	// first read with done = 0, then after every read.
	Progress func(path string, done, size int64)
	// Hold, if not nil, makes Resolve open each image file itself (Open
	// must be nil), hash it through that descriptor and keep it in Hold
	// for the VMM (see Held). An image that can only be given by a claimed
	// digest, or a file named twice, is then refused.
	Hold *Held
}

// ImageError says which image could not be hashed.
type ImageError struct {
	Field string // "disk.0.sha256", "boot.loader.sha256", "kernel.sha256"
	Path  string
	Err   error
}

func (e *ImageError) Error() string {
	return fmt.Sprintf("%s: hashing %s: %v", e.Field, e.Path, e.Err)
}
func (e *ImageError) Unwrap() error { return e.Err }

// Resolve hashes every image given as a path and returns the configuration
// ready to measure. Each distinct file is read exactly once, in one pass,
// even if several images name it.
func (c *Config) Resolve(ctx context.Context, opts ResolveOptions) (*measure.Config, error) {
	if err := c.check(nil); err != nil {
		return nil, err
	}
	type hashed struct {
		d      measure.Digest
		header []byte
	}
	cache := map[string]hashed{}
	if opts.Hold != nil && opts.Open != nil {
		return nil, errors.New("ResolveOptions: Hold and Open exclude each other")
	}
	digest := func(img *Image, field, role, format string) (*measure.Digest, error) {
		if img == nil {
			return nil, nil
		}
		if img.SHA256 != nil {
			d := *img.SHA256
			return &d, nil
		}
		p := img.Path
		if !filepath.IsAbs(p) && opts.Dir != "" {
			p = filepath.Join(opts.Dir, p)
		}
		p = filepath.Clean(p)
		named := field
		if img.Field != "" {
			named = img.Field
		}
		h, ok := cache[p]
		if ok && opts.Hold != nil {
			return nil, &ImageError{Field: field, Path: p, Err: errors.New("the file is named twice; a VMM gets each measured file once")}
		}
		if !ok {
			d, header, err := hashFile(ctx, p, role, opts)
			if err != nil {
				if img.Claimed != nil && (opts.Hold == nil || opts.Hold.StandIns) && errors.Is(err, fs.ErrPermission) {
					// The agent may not read the file: the claimed digest
					// stands in for it. A qcow2 image could name other files.
					if format == "qcow2" {
						return nil, &FieldError{Field: named, Err: fmt.Errorf("%w: %s is qcow2 and the agent cannot read it to check that it names no backing or data file", ErrNotAllowed, p)}
					}
					d := *img.Claimed
					if opts.Hold != nil {
						if err := opts.Hold.standIn(p, role, d); err != nil {
							return nil, &ImageError{Field: field, Path: p, Err: err}
						}
					}
					return &d, nil
				}
				return nil, &ImageError{Field: field, Path: p, Err: err}
			}
			h = hashed{d, header}
			cache[p] = h
		}
		if img.Claimed != nil && *img.Claimed != h.d {
			return nil, &FieldError{Field: named, Err: fmt.Errorf("%w: %s hashes to %s, the digest given for it is %s", ErrDigestMismatch, p, h.d, *img.Claimed)}
		}
		if format == "qcow2" {
			if err := checkQcow2(h.header); err != nil {
				return nil, &FieldError{Field: named, Err: fmt.Errorf("%w: %s: %w", ErrNotAllowed, p, err)}
			}
		}
		d := h.d
		return &d, nil
	}
	mc := c.skeleton()
	var err error
	for i, d := range c.Disks {
		if mc.Disks[i].SHA256, err = digest(d.Image, measure.DiskSHA256Name(i), d.Target, d.Format); err != nil {
			return nil, err
		}
	}
	if mc.BootLoader, err = digest(c.BootLoader, measure.NameBootLoader, "loader", ""); err != nil {
		return nil, err
	}
	if mc.Kernel, err = digest(c.Kernel, measure.NameKernel, "kernel", ""); err != nil {
		return nil, err
	}
	return mc, nil
}

// headerSize is how much of each image hashFile keeps (a qcow2 header is
// at most a few hundred bytes before its extensions).
const headerSize = 512

// hashFile hashes path in one streaming pass and returns its first
// headerSize bytes too.
func hashFile(ctx context.Context, path, role string, opts ResolveOptions) (measure.Digest, []byte, error) {
	open := opts.Open
	if open == nil {
		open = openFile
	}
	var (
		f      io.ReadCloser
		size   int64
		finish func(measure.Digest) error
		err    error
	)
	if opts.Hold != nil {
		f, size, finish, err = opts.Hold.open(path, role)
	} else {
		f, size, err = open(path)
	}
	if err != nil {
		return measure.Digest{}, nil, err
	}
	defer f.Close()
	var progress func(int64)
	if opts.Progress != nil {
		opts.Progress(path, 0, size)
		progress = func(done int64) { opts.Progress(path, done, size) }
	}
	hr := &headReader{r: ctxReader{ctx, f}}
	d, _, err := measure.HashImage(hr, progress)
	if err == nil && finish != nil {
		err = finish(d)
	}
	return d, hr.head, err
}

// headReader keeps the first headerSize bytes read through it.
type headReader struct {
	r    io.Reader
	head []byte
}

func (h *headReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if k := min(n, headerSize-len(h.head)); k > 0 {
		h.head = append(h.head, p[:k]...)
	}
	return n, err
}

// checkQcow2 refuses a qcow2 image that makes the VMM open another file: a
// backing file (header field backing_file_offset) or an external data file
// (incompatible feature bit 2). Schema v1 measures one file per disk.
func checkQcow2(h []byte) error {
	if len(h) < 72 || string(h[:4]) != "QFI\xfb" {
		return errors.New("the driver says qcow2 but the file is not a qcow2 image")
	}
	version := binary.BigEndian.Uint32(h[4:8])
	if off := binary.BigEndian.Uint64(h[8:16]); off != 0 {
		return errors.New("the qcow2 image names a backing file, which is not measured: flatten it (qemu-img convert)")
	}
	if version >= 3 && len(h) >= 80 && binary.BigEndian.Uint64(h[72:80])&(1<<2) != 0 {
		return errors.New("the qcow2 image keeps its data in an external data file, which is not measured")
	}
	return nil
}

func openFile(path string) (io.ReadCloser, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		size = -1 // a block device reports 0
	}
	return f, size, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

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
	"strings"

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
			h = hashed{d: d, header: header}
			cache[p] = h
		}
		if img.Claimed != nil && *img.Claimed != h.d {
			return nil, &FieldError{Field: named, Err: fmt.Errorf("%w: %s hashes to %s, the digest given for it is %s", ErrDigestMismatch, p, h.d, *img.Claimed)}
		}
		if format == "qcow2" {
			q, err := readQcow2(h.header)
			if err != nil {
				return nil, &FieldError{Field: named, Err: fmt.Errorf("%w: %s: %w", ErrNotAllowed, p, err)}
			}
			h.backing, h.backingFormat = q.backing, q.backingFormat
			cache[p] = h
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
		if mc.Disks[i].Backing, err = c.resolveChain(d, i, opts, cache, digest); err != nil {
			return nil, err
		}
	}
	if mc.BootLoader, err = digest(c.BootLoader, measure.NameBootLoader, "loader", ""); err != nil {
		return nil, err
	}
	if mc.Kernel, err = digest(c.Kernel, measure.NameKernel, "kernel", ""); err != nil {
		return nil, err
	}
	if mc.Initrd, err = digest(c.Initrd, measure.NameInitrd, "initrd", ""); err != nil {
		return nil, err
	}
	if mc.NVRAMTemplate, err = digest(c.NVRAMTemplate, measure.NameNVRAMTemplate, "nvram-template", ""); err != nil {
		return nil, err
	}
	return mc, nil
}

// BackingRole is the role of the k-th image (k = 1 for the top image's
// backing file) below disk target's in its backing chain: "vda.backing1".
func BackingRole(target string, k int) string { return fmt.Sprintf("%s.backing%d", target, k) }

// resolveChain measures the backing chain of disk i: digests given as such,
// or, for a qcow2 image file, every file its header names, in turn, down to
// an image without a backing file.
func (c *Config) resolveChain(d Disk, i int, opts ResolveOptions, cache map[string]hashed,
	digest func(img *Image, field, role, format string) (*measure.Digest, error)) ([]measure.Digest, error) {
	field := measure.DiskBackingName(i)
	if d.Image == nil {
		return nil, nil
	}
	if d.Image.SHA256 != nil || d.Format != "qcow2" {
		// Digests given as such (a file's chain is in its header).
		var out []measure.Digest
		for _, b := range d.Backing {
			if b.SHA256 == nil {
				return nil, fieldErr(b.Field, ErrInvalid, "a backing image of a disk given by digest must be given by digest too")
			}
			out = append(out, *b.SHA256)
		}
		return out, nil
	}
	var out []measure.Digest
	cur := c.imagePath(d.Image, opts)
	for k := 1; ; k++ {
		h := cache[cur]
		if h.backing == "" {
			break
		}
		if k > measure.MaxBacking {
			return nil, &ImageError{Field: field, Path: cur, Err: fmt.Errorf("%w: the backing chain is longer than %d images", ErrUnsupported, measure.MaxBacking)}
		}
		next := h.backing
		if !filepath.IsAbs(next) {
			// QEMU takes a relative backing file name relative to the
			// directory of the image that names it.
			next = filepath.Join(filepath.Dir(cur), next)
		}
		next = filepath.Clean(next)
		if k <= len(d.Backing) {
			if want := c.imagePath(d.Backing[k-1], opts); want != next {
				return nil, &FieldError{Field: d.Backing[k-1].Field, Err: fmt.Errorf("%w: the domain declares backing image %d of %s as %s, the qcow2 header of %s names %s", ErrAmbiguous, k, d.Target, want, cur, next)}
			}
		}
		dg, err := digest(&Image{Path: next, Field: d.Image.Field}, field, BackingRole(d.Target, k), h.backingFormat)
		if err != nil {
			return nil, err
		}
		out = append(out, *dg)
		cur = next
	}
	if len(d.Backing) > len(out) {
		return nil, &FieldError{Field: d.Backing[len(out)].Field, Err: fmt.Errorf("%w: the domain declares %d backing images for %s, the qcow2 headers name %d", ErrAmbiguous, len(d.Backing), d.Target, len(out))}
	}
	return out, nil
}

// imagePath is the cleaned path Resolve reads img from.
func (c *Config) imagePath(img *Image, opts ResolveOptions) string {
	p := img.Path
	if !filepath.IsAbs(p) && opts.Dir != "" {
		p = filepath.Join(opts.Dir, p)
	}
	return filepath.Clean(p)
}

// hashed is a file Resolve hashed: its digest and, for a qcow2 image, the
// backing file its header names.
type hashed struct {
	d                      measure.Digest
	header                 []byte
	backing, backingFormat string
}

// headerSize is how much of each image hashFile keeps: the qcow2 header,
// its extensions and the backing file name, which qemu-img writes within
// the first few KiB.
const headerSize = 64 << 10

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

// qcow2Info is what Resolve reads of a qcow2 header.
type qcow2Info struct {
	backing, backingFormat string // the backing file's name and format ("" = none)
}

// readQcow2 reads a qcow2 header (the first headerSize bytes of the
// image): the backing file it names and that file's format (header
// extension 0xe2792aca). It refuses what would make the VMM open a file that
// is not measured or read one in a format nobody chose: an external data
// file (incompatible feature bit 2), a backing file without a format (QEMU
// would probe it: a raw backing image that looks like qcow2 would be read as
// qcow2), a format other than raw or qcow2, or a name outside the header
// read.
func readQcow2(h []byte) (qcow2Info, error) {
	var q qcow2Info
	if len(h) < 72 || string(h[:4]) != "QFI\xfb" {
		return q, errors.New("the driver says qcow2 but the file is not a qcow2 image")
	}
	version := binary.BigEndian.Uint32(h[4:8])
	if version >= 3 && len(h) >= 80 && binary.BigEndian.Uint64(h[72:80])&(1<<2) != 0 {
		return q, errors.New("the qcow2 image keeps its data in an external data file, which is not measured")
	}
	off, size := binary.BigEndian.Uint64(h[8:16]), uint64(binary.BigEndian.Uint32(h[16:20]))
	if off == 0 {
		return q, nil
	}
	if size == 0 || size > 1023 || off > uint64(len(h)) || off+size > uint64(len(h)) {
		return q, fmt.Errorf("the backing file name (offset %d, %d bytes) is not within the first %d bytes of the image", off, size, len(h))
	}
	q.backing = string(h[off : off+size])
	if strings.ContainsRune(q.backing, 0) || strings.Contains(q.backing, ":") && !strings.HasPrefix(q.backing, "/") && !strings.HasPrefix(q.backing, ".") {
		return q, fmt.Errorf("the backing file name %q is not a plain file name (a protocol or json: name opens something else than a file)", q.backing)
	}
	// Header extensions follow the header (72 bytes in version 2,
	// header_length in version 3), each: u32 type, u32 length, data
	// padded to 8 bytes; type 0 ends them.
	ext := uint64(72)
	if version >= 3 && len(h) >= 104 {
		ext = uint64(binary.BigEndian.Uint32(h[100:104]))
	}
	for ext+8 <= uint64(len(h)) {
		typ, n := binary.BigEndian.Uint32(h[ext:ext+4]), uint64(binary.BigEndian.Uint32(h[ext+4:ext+8]))
		if typ == 0 || ext+8+n > uint64(len(h)) {
			break
		}
		if typ == 0xe2792aca {
			q.backingFormat = string(h[ext+8 : ext+8+n])
		}
		ext += 8 + (n+7)/8*8
	}
	switch q.backingFormat {
	case "raw", "qcow2":
	case "":
		return q, fmt.Errorf("the qcow2 image names backing file %q without its format, which QEMU would probe: set it (qemu-img rebase -u -F raw|qcow2 -b …)", q.backing)
	default:
		return q, fmt.Errorf("backing file %q has format %q: only raw and qcow2 are measured", q.backing, q.backingFormat)
	}
	return q, nil
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

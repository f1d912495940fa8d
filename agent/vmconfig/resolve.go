package vmconfig

import (
	"context"
	"fmt"
	"io"
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
	cache := map[string]measure.Digest{}
	digest := func(img *Image, field string) (*measure.Digest, error) {
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
		if d, ok := cache[p]; ok {
			return &d, nil
		}
		d, err := hashFile(ctx, p, opts)
		if err != nil {
			return nil, &ImageError{Field: field, Path: p, Err: err}
		}
		cache[p] = d
		return &d, nil
	}
	mc := c.skeleton()
	var err error
	for i, d := range c.Disks {
		if mc.Disks[i].SHA256, err = digest(d.Image, measure.DiskSHA256Name(i)); err != nil {
			return nil, err
		}
	}
	if mc.BootLoader, err = digest(c.BootLoader, measure.NameBootLoader); err != nil {
		return nil, err
	}
	if mc.Kernel, err = digest(c.Kernel, measure.NameKernel); err != nil {
		return nil, err
	}
	return mc, nil
}

func hashFile(ctx context.Context, path string, opts ResolveOptions) (measure.Digest, error) {
	open := opts.Open
	if open == nil {
		open = openFile
	}
	f, size, err := open(path)
	if err != nil {
		return measure.Digest{}, err
	}
	defer f.Close()
	var progress func(int64)
	if opts.Progress != nil {
		opts.Progress(path, 0, size)
		progress = func(done int64) { opts.Progress(path, done, size) }
	}
	d, _, err := measure.HashImage(ctxReader{ctx, f}, progress)
	return d, err
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

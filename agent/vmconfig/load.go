package vmconfig

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmledger/vmledger/agent/measure"
)

// DetectFormat picks the format of a configuration file: by extension
// (.json; .yaml or .yml; .xml), otherwise by content (a document starting
// with "<" is libvirt XML, with "{" JSON, anything else YAML).
func DetectFormat(name string, data []byte) Format {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		return FormatJSON
	case ".yaml", ".yml":
		return FormatYAML
	case ".xml":
		return FormatLibvirt
	}
	t := bytes.TrimLeft(data, " \t\r\n\ufeff")
	switch {
	case bytes.HasPrefix(t, []byte("<")):
		return FormatLibvirt
	case bytes.HasPrefix(t, []byte("{")):
		return FormatJSON
	}
	return FormatYAML
}

// MaxFileSize bounds a configuration file read by LoadFile.
const MaxFileSize = 16 << 20

// LoadFile reads and parses a configuration file; f == "" detects the
// format. The returned ResolveOptions.Dir is the file's directory, for
// relative image paths.
func LoadFile(path string, f Format, opts Options) (*Config, ResolveOptions, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, ResolveOptions{}, err
	}
	if f == "" {
		f = DetectFormat(path, data)
	}
	c, err := Parse(data, f, opts)
	if err != nil {
		return nil, ResolveOptions{}, fmt.Errorf("%s (%s): %w", path, f, err)
	}
	return c, ResolveOptions{Dir: filepath.Dir(path)}, nil
}

func readBounded(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("%s: %d bytes, a configuration file is at most %d", path, fi.Size(), MaxFileSize)
	}
	return os.ReadFile(path)
}

// LoadPackagesFile reads a PackageFile (JSON or YAML by extension/content).
func LoadPackagesFile(path string) ([]measure.Package, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	f := DetectFormat(path, data)
	if f == FormatLibvirt {
		return nil, fmt.Errorf("%s: a package file is JSON or YAML, not XML", path)
	}
	p, err := ParsePackages(data, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// MeasureFile loads a configuration file, hashes its images and measures it
// under measure.Current (schema v2) for VM vmID with secret: what `vmledger
// agent measure` does, and what a customer's client calls to recompute the
// root it expects (images given by digest need no file). progress, if not
// nil, reports hashing progress.
func MeasureFile(ctx context.Context, path string, f Format, opts Options, vmID string, secret measure.Secret, progress func(path string, done, size int64)) (*measure.Measurement, error) {
	c, ro, err := LoadFile(path, f, opts)
	if err != nil {
		return nil, err
	}
	ro.Progress = progress
	mc, err := c.Resolve(ctx, ro)
	if err != nil {
		return nil, err
	}
	mc.VMID = vmID
	return measure.Current.Measure(mc, secret)
}

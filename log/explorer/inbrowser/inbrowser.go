// Package inbrowser is what the explorer's WebAssembly verifier runs: the
// inputs a customer picks in the browser (bundle, trust file, expected
// configuration, VM secret, expected VM id) turned into one client.Verify,
// with the same checks and the same report as `vmledger verify`. It reads no
// file and no network: everything comes in as bytes.
package inbrowser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/vmconfig"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/log/bundle"
)

// Input is what the customer picked.
type Input struct {
	Bundle []byte
	Trust  []byte
	// Config is the expected configuration; ConfigName its file name, for
	// the format (by extension, then by content). Optional.
	Config     []byte
	ConfigName string
	// Secret is the VM secret: 32 raw bytes or 64 hex digits. Required
	// with Config.
	Secret []byte
	// VMID, if set, must be the attested VM.
	VMID string
	// Now is the time of max-age checks; zero means time.Now().
	Now time.Time
}

// Output is the answer: a report, or an error naming the input to fix.
type Output struct {
	Report *client.Report `json:"report,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// ErrInput is wrapped by errors about the picked files (not about the
// bundle: a bad bundle gets a failed report, like in vmledger verify).
var ErrInput = errors.New("input")

// errNoFiles: the browser cannot read image files a configuration names.
var errNoFiles = errors.New("the browser verifier reads no files: give each image's sha256 in the configuration instead of its path")

// Verify runs client.Verify on in.
func Verify(ctx context.Context, in Input) Output {
	r, err := verify(ctx, in)
	if err != nil {
		return Output{Error: err.Error()}
	}
	return Output{Report: r}
}

func verify(ctx context.Context, in Input) (*client.Report, error) {
	if len(in.Trust) == 0 {
		return nil, fmt.Errorf("%w: pick your trust file", ErrInput)
	}
	trust, err := client.ParseTrust(in.Trust, "")
	if err != nil {
		return nil, fmt.Errorf("%w: trust file: %w", ErrInput, err)
	}
	exp := &client.Expected{VMID: in.VMID}
	switch {
	case len(in.Config) > 0:
		if len(in.Secret) == 0 {
			return nil, fmt.Errorf("%w: the expected configuration needs the VM secret", ErrInput)
		}
		secret, err := measure.ParseSecret(in.Secret)
		if err != nil {
			return nil, fmt.Errorf("%w: VM secret: %w", ErrInput, err)
		}
		format := vmconfig.DetectFormat(in.ConfigName, in.Config)
		vc, err := vmconfig.Parse(in.Config, format, vmconfig.Options{})
		if err != nil {
			return nil, fmt.Errorf("%w: configuration %s (%s): %w", ErrInput, in.ConfigName, format, err)
		}
		cfg, err := vc.Resolve(ctx, vmconfig.ResolveOptions{
			Open: func(path string) (io.ReadCloser, int64, error) { return nil, 0, errNoFiles },
		})
		if err != nil {
			return nil, fmt.Errorf("%w: configuration %s: %w", ErrInput, in.ConfigName, err)
		}
		exp.Config, exp.Secret = cfg, &secret
	case len(in.Secret) > 0:
		return nil, fmt.Errorf("%w: the VM secret goes with an expected configuration", ErrInput)
	}
	b, err := bundle.Parse(in.Bundle)
	if err != nil {
		return client.UndecodableReport(fmt.Errorf("bundle: %w", err)), nil
	}
	r, _ := client.Verify(ctx, b, trust, exp, client.Options{Now: in.Now})
	return r, nil
}

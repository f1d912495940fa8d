//go:build !cgo || vmledger_nosim

package spec

import "github.com/google/go-tpm/tpm2/transport"

func openSimulator() (transport.TPMCloser, error) { return nil, ErrNoSimulator }

//go:build cgo && !vmledger_nosim

package spec

import (
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/vmledger/vmledger/coproc/tpmsim"
)

func openSimulator() (transport.TPMCloser, error) { return tpmsim.Open() }

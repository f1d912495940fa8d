// Package tpmsim opens the in-process TPM 2.0 simulator of
// github.com/google/go-tpm-tools/simulator (the Microsoft reference
// implementation, built with cgo) as a go-tpm transport. It lives apart from
// package coproc/tpm so that only code that asks for the simulator compiles it.
//
// The simulator is one global instance per process: Open blocks while another
// Simulator is open, and every Open starts from a freshly manufactured TPM
// (new seeds, empty NV), so keys and counters do not outlive Close. Reset
// simulates a reboot and keeps NV.
package tpmsim

import (
	"fmt"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpmutil"
)

// Simulator is an open simulator; it implements transport.TPMCloser.
type Simulator struct {
	sim *simulator.Simulator
}

var _ transport.TPMCloser = (*Simulator)(nil)

// Open starts the simulator (powered on, TPM2_Startup done).
func Open() (*Simulator, error) {
	sim, err := simulator.Get()
	if err != nil {
		return nil, fmt.Errorf("tpmsim: %w", err)
	}
	return &Simulator{sim: sim}, nil
}

// Send implements transport.TPM.
func (s *Simulator) Send(cmd []byte) ([]byte, error) {
	return tpmutil.RunCommandRaw(s.sim, cmd)
}

// Reset reboots the simulated TPM (TPM2_Shutdown, power cycle, TPM2_Startup):
// transient objects and sessions are gone, NV and persistent objects stay.
func (s *Simulator) Reset() error {
	if err := s.sim.Reset(); err != nil {
		return fmt.Errorf("tpmsim: reset: %w", err)
	}
	return nil
}

// Close shuts the simulator down and lets the next Open proceed.
func (s *Simulator) Close() error {
	return s.sim.Close()
}

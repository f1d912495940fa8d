// Package spec opens a co-processor from a SPEC string, the value of the
// --coproc flag:
//
//	tpm:/dev/tpmrm0        a TPM 2.0 character device (the kernel resource manager)
//	swtpm:127.0.0.1:2321   swtpm's TCP server socket (raw TPM commands)
//	sim                    the in-process TPM simulator: new and empty every time
//	soft:/var/lib/vmledger/coproc   a software key directory (package coproc/soft)
//
// Nothing is chosen implicitly: there is no default SPEC, and a software key is
// used only when the SPEC says soft.
//
// The simulator needs cgo. Building with the tag vmledger_nosim (or with
// CGO_ENABLED=0) leaves it out; SPEC "sim" then fails with ErrNoSimulator.
package spec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/coproc/tpm"
)

// Kind is the backend a SPEC names.
type Kind string

const (
	TPM   Kind = "tpm"
	Swtpm Kind = "swtpm"
	Sim   Kind = "sim"
	Soft  Kind = "soft"
)

var (
	// ErrBadSpec: the SPEC string is not one of the forms above.
	ErrBadSpec = errors.New("bad co-processor SPEC")
	// ErrNoSimulator: this binary was built without the simulator.
	ErrNoSimulator = errors.New("built without the TPM simulator (cgo and no vmledger_nosim tag needed)")
)

// Spec is a parsed SPEC.
type Spec struct {
	Kind Kind
	// Arg is the device path, the swtpm host:port or the soft directory.
	Arg string
}

func (s Spec) String() string {
	if s.Kind == Sim {
		return string(Sim)
	}
	return string(s.Kind) + ":" + s.Arg
}

// Usage is a one-line summary of the SPEC forms, for help texts and errors.
const Usage = "tpm:/dev/tpmrm0, swtpm:HOST:PORT, sim or soft:DIR"

// Parse parses a SPEC.
func Parse(s string) (Spec, error) {
	bad := func(why string) (Spec, error) {
		return Spec{}, fmt.Errorf("%w %q: %s (want %s)", ErrBadSpec, s, why, Usage)
	}
	if s == string(Sim) {
		return Spec{Kind: Sim}, nil
	}
	kind, arg, ok := strings.Cut(s, ":")
	if !ok {
		return bad("no backend prefix")
	}
	if arg == "" {
		return bad("empty " + kind + " argument")
	}
	switch Kind(kind) {
	case TPM, Soft:
		return Spec{Kind: Kind(kind), Arg: arg}, nil
	case Swtpm:
		host, port, err := net.SplitHostPort(arg)
		if err != nil || host == "" {
			return bad("want HOST:PORT")
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return bad("bad port")
		}
		return Spec{Kind: Swtpm, Arg: arg}, nil
	case Sim:
		return bad("sim takes no argument")
	default:
		return bad("unknown backend " + kind)
	}
}

// Options configure Init and Open.
type Options struct {
	// TPM configures TPM backends (handles, owner auth). Device is filled in
	// from the SPEC.
	TPM tpm.Config
	// SoftAlgorithm is the key type Init creates for soft (default Ed25519).
	SoftAlgorithm soft.Algorithm
	// Now returns statement times; nil means TPM.Now, or time.Now.
	Now func() time.Time
	// AuthFile, for TPM backends, names the file (mode 0600, AuthSize
	// bytes) holding the authorization value of the signing key and the
	// attestation key: Init creates it if missing and gives it to the keys
	// it creates; Open reads it. "" means no authorization value.
	AuthFile string
}

func (s Spec) transport(ctx context.Context) (transport.TPMCloser, error) {
	switch s.Kind {
	case TPM:
		return tpm.OpenDevice(s.Arg)
	case Swtpm:
		return tpm.DialSwtpm(ctx, s.Arg)
	case Sim:
		return openSimulator()
	}
	return nil, fmt.Errorf("%w: %s is not a TPM", ErrBadSpec, s)
}

func (s Spec) tpmConfig(o Options) tpm.Config {
	cfg := o.TPM
	if o.Now != nil {
		cfg.Now = o.Now
	}
	switch s.Kind {
	case Sim:
		cfg.Device = "simulator"
	case Swtpm:
		cfg.Device = "swtpm " + s.Arg
	default:
		cfg.Device = s.Arg
	}
	return cfg
}

// Init creates the co-processor's key and state where missing (idempotent)
// and reports what it created. For sim it provisions a simulator that is gone
// when Init returns.
func Init(ctx context.Context, s Spec, o Options) (created []string, err error) {
	if s.Kind == Soft {
		alg := o.SoftAlgorithm
		if alg == "" {
			alg = soft.Ed25519
		}
		made, err := soft.Init(ctx, s.Arg, alg)
		if made {
			created = append(created, string(alg)+" key")
		}
		return created, err
	}
	cfg := s.tpmConfig(o)
	if o.AuthFile != "" {
		if cfg.KeyAuth, err = readAuth(o.AuthFile, true); err != nil {
			return nil, err
		}
	}
	t, err := s.transport(ctx)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	return tpm.Provision(ctx, t, cfg)
}

// Rotate replaces a TPM co-processor's signing key and AK with new ones
// (tpm.Rotate), for re-enrolment after a revocation. Not for soft or sim.
func Rotate(ctx context.Context, s Spec, o Options) (created []string, err error) {
	if s.Kind == Soft || s.Kind == Sim {
		return nil, fmt.Errorf("%w: --rotate is for TPMs (tpm:, swtpm:); for soft:, use a new directory", ErrBadSpec)
	}
	cfg := s.tpmConfig(o)
	if o.AuthFile != "" {
		if cfg.KeyAuth, err = readAuth(o.AuthFile, true); err != nil {
			return nil, err
		}
	}
	t, err := s.transport(ctx)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	return tpm.Rotate(ctx, t, cfg)
}

// Open opens the co-processor. A TPM or soft directory that was not
// initialised gives an error wrapping coproc.ErrNotInitialized. sim is
// provisioned on the spot, since every simulator starts empty.
func Open(ctx context.Context, s Spec, o Options) (coproc.CoProcessor, error) {
	if s.Kind == Soft {
		return soft.Open(ctx, s.Arg, soft.Options{Now: o.Now})
	}
	cfg := s.tpmConfig(o)
	if o.AuthFile != "" {
		var err error
		if cfg.KeyAuth, err = readAuth(o.AuthFile, s.Kind == Sim); err != nil {
			return nil, err
		}
	}
	t, err := s.transport(ctx)
	if err != nil {
		return nil, err
	}
	if s.Kind == Sim {
		if _, err := tpm.Provision(ctx, t, cfg); err != nil {
			t.Close()
			return nil, err
		}
	}
	return tpm.Open(ctx, t, cfg)
}

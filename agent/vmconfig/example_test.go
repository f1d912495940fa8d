package vmconfig_test

import (
	"context"
	"fmt"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/vmconfig"
)

// A customer recomputes the root they expect from the configuration they
// ordered (images by digest) and the VM secret, then compares it with the
// attested root.
func Example() {
	ordered := []byte(`schema: vmledger/config/v1
memory: 8GiB
cpu: {count: 4, affinity: "4-7"}
nics: [{mac: "52:54:00:6b:3c:58", vlan: 42}]
disks: [{target: vda, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
`)
	cfg, err := vmconfig.ParseYAML(ordered)
	if err != nil {
		panic(err)
	}
	mc, err := cfg.Resolve(context.Background(), vmconfig.ResolveOptions{})
	if err != nil {
		panic(err)
	}
	var secret measure.Secret // in real life: the 32 bytes shared with the provider
	copy(secret[:], "an example secret, 32 bytes long")
	root, err := measure.Root(mc, secret)
	if err != nil {
		panic(err)
	}
	fmt.Println(mc.MemoryBytes, mc.CPUAffinity, mc.NICs[0].MAC, len(root))
	// Output: 8589934592 4-7 52:54:00:6b:3c:58 32
}

// Libvirt XML: units follow libvirt's rules, and a missing required field
// is refused with an error naming it.
func ExampleParseLibvirt() {
	_, err := vmconfig.ParseLibvirt([]byte(`<domain><memory unit='GiB'>2</memory></domain>`), vmconfig.Options{})
	fmt.Println(err)
	// Output: field /domain/vcpu: required value missing: no <vcpu> element
}

package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// domainXML is a libvirt domain as `virsh dumpxml` prints it, with one
// disk image (hashed by the agent), one NIC and a kernel command line.
const domainXML = `<domain type='kvm'>
  <name>%s</name>
  <memory unit='KiB'>%d</memory>
  <currentMemory unit='KiB'>%[2]d</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <cmdline>console=ttyS0 root=/dev/vda1 ro</cmdline>
    <boot dev='hd'/>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:6b:3c:62'/>
      <source bridge='br0'/>
      <vlan><tag id='42'/></vlan>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
`

// hookVM runs `vmledger agent hook` the way libvirt does before it starts
// a domain (DOMAIN prepare begin -, the domain XML on stdin), with the VM's
// secret provisioned in the agent's store. It returns the VM as its owner
// ordered it (the same machine as a vmledger/config/v1 JSON file, the disk
// given by path) and the path of the bundle the hook left in the store.
//
// It also checks that the hook refuses a domain whose secret is not in the
// store, and ignores the operations other than prepare/begin.
func hookVM(t *testing.T, d *deployment, id string) (vm, string) {
	t.Helper()
	disk := writeFile(t, d.path(id+".qcow2"), []byte("not really a qcow2 image, but hashed all the same\n"), 0o644)
	xml := fmt.Sprintf(domainXML, id, 4<<20, disk)
	ordered := vm{
		id: id,
		config: writeFile(t, d.path(id+".json"), fmt.Appendf(nil, `{
  "schema": "vmledger/config/v1",
  "memory": "4GiB",
  "cpu": {"count": 2},
  "nics": [{"mac": "52:54:00:6b:3c:62", "vlan": 42}],
  "disks": [{"target": "vda", "path": %q}],
  "boot": {"cmdline": "console=ttyS0 root=/dev/vda1 ro"}
}
`, disk), 0o644),
	}

	// Provision the VM's secret in the store, laid out as package
	// agent/store documents it (<store>/<vm>/secret, 32 raw bytes, 0600).
	store := d.path("hook-store")
	if err := os.MkdirAll(filepath.Join(store, id), 0o700); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	ordered.secret = writeFile(t, filepath.Join(store, id, "secret"), secret, 0o600)

	cfg, err := json.Marshal(map[string]string{
		"log": d.logURL, "trust": d.trust, "coproc": d.coproc(), "store": store,
		"state": d.path("hook-log-state.json"), "timeout": "1m",
	})
	if err != nil {
		t.Fatal(err)
	}
	agentConfig := writeFile(t, d.path("agent.json"), cfg, 0o644)

	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		want     string // in stderr
	}{
		{"prepare begin", []string{id, "prepare", "begin", "-"}, xml, 0, "attestation verified, libvirt may start the domain"},
		// Again, with the state file the first run left: the log's
		// consistency is proved through the log.
		{"prepare begin again", []string{id, "prepare", "begin", "-"}, xml, 0, "attestation verified, libvirt may start the domain"},
		{"no secret in the store", []string{"stranger01", "prepare", "begin", "-"}, fmt.Sprintf(domainXML, "stranger01", 4<<20, disk), 3, "attestation failed, launch aborted"},
		{"another operation", []string{id, "started", "begin", "-"}, "", 0, ""},
	}
	for _, tt := range tests {
		r := vmledgerStdin(t, tt.stdin, append([]string{"agent", "hook", "--agent-config", agentConfig}, tt.args...)...)
		if r.code != tt.wantCode || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("agent hook %s (%s): exit %d; want exit %d, %q in stderr\n%s", strings.Join(tt.args, " "), tt.name, r.code, tt.wantCode, tt.want, r)
		}
	}
	return ordered, filepath.Join(store, id, "bundle")
}

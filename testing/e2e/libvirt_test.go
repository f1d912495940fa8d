package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hookScript is where libvirt's qemu driver looks for its hook.
const hookScript = "/etc/libvirt/hooks/qemu"

// virsh runs virsh on the system libvirtd.
func virsh(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-c", "qemu:///system"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestLibvirtHook installs `vmledger agent hook` as libvirt's qemu hook and
// starts domains with `virsh create` on the host's libvirtd (domain type
// qemu, TCG): the domain the owner ordered starts; one that adds a
// <qemu:commandline> is refused by the hook and libvirt does not start it.
//
// It replaces /etc/libvirt/hooks/qemu while it runs (restoring it after),
// so it runs only with VMLEDGER_TEST_LIBVIRT=1, as root, with libvirtd and
// virtlogd running (apt-get install libvirt-daemon-system; virtlogd -d;
// libvirtd -d). libvirtd notices a hook script only if one existed when it
// started: create the file before starting libvirtd.
func TestLibvirtHook(t *testing.T) {
	if os.Getenv("VMLEDGER_TEST_LIBVIRT") != "1" {
		t.Skip("set VMLEDGER_TEST_LIBVIRT=1 to run against the host's libvirtd (replaces " + hookScript + " while it runs)")
	}
	if out, err := virsh(t, "version"); err != nil {
		t.Fatalf("virsh version: %v\n%s", err, out)
	}
	d := deploy(t)
	const id = "vmledger-e2e-lv01"
	// QEMU runs as libvirt's unprivileged user: the image's directory must
	// be reachable by others (t.TempDir's are not).
	imageDir, err := os.MkdirTemp("", "vmledger-e2e-lv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(imageDir) })
	if err := os.Chmod(imageDir, 0o755); err != nil {
		t.Fatal(err)
	}
	image := writeFile(t, filepath.Join(imageDir, "lv01.raw"), make([]byte, 1<<20), 0o644)
	store := d.path("lv-store")
	if err := os.MkdirAll(filepath.Join(store, id), 0o700); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	writeFile(t, filepath.Join(store, id, "secret"), secret, 0o600)
	writeFile(t, filepath.Join(store, id, "expected.json"), fmt.Appendf(nil, `{
  "schema": "vmledger/config/v1",
  "memory": "64MiB",
  "cpu": {"count": 1},
  "nics": [{"mac": "52:54:00:12:34:57"}],
  "disks": [{"target": "vda", "path": %q}]
}
`, image), 0o644)
	cfg, _ := json.Marshal(map[string]string{"log": d.logURL, "trust": d.trust, "coproc": d.coproc(), "store": store, "timeout": "1m"})
	agentConfig := writeFile(t, d.path("lv-agent.json"), cfg, 0o644)

	old, err := os.ReadFile(hookScript)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(hookScript), 0o755); err != nil {
		t.Fatal(err)
	}
	hookLine := fmt.Sprintf("exec %s agent hook --agent-config %s \"$@\"\n", vmledgerBin, agentConfig)
	writeFile(t, hookScript, []byte("#!/bin/sh\n"+hookLine), 0o755)
	t.Cleanup(func() {
		if old != nil {
			os.WriteFile(hookScript, old, 0o755)
		} else {
			os.Remove(hookScript)
		}
	})

	domain := func(extra, ns string) string {
		return writeFile(t, d.path("lv01-"+fmt.Sprint(len(extra))+".xml"), fmt.Appendf(nil, `<domain type='qemu'%s>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    <interface type='user'><mac address='52:54:00:12:34:57'/><model type='virtio'/></interface>
  </devices>
  %s
</domain>
`, ns, id, image, extra), 0o644)
	}

	out, err := virsh(t, "create", domain("", ""))
	if err != nil {
		t.Fatalf("virsh create (the ordered domain): %v\n%s", err, out)
	}
	state, _ := virsh(t, "domstate", id)
	virsh(t, "destroy", id)
	if !strings.Contains(state, "running") {
		t.Errorf("virsh domstate %s = %q, want running", id, state)
	}
	if _, err := os.Stat(filepath.Join(store, id, "bundle")); err != nil {
		t.Errorf("the hook left no bundle in the store (was it called? libvirtd must be started after %s exists): %v", hookScript, err)
	}

	out, err = virsh(t, "create", domain(`<qemu:commandline><qemu:arg value='-append'/><qemu:arg value='init=/bin/sh'/></qemu:commandline>`,
		` xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'`))
	if err == nil {
		virsh(t, "destroy", id)
		t.Fatalf("virsh create started the domain with a qemu:commandline\n%s", out)
	}
	if !strings.Contains(out, "Hook script execution failed") || !strings.Contains(out, "/domain/qemu:commandline") {
		t.Errorf("virsh create (hostile): %v; want the hook's refusal naming /domain/qemu:commandline\n%s", err, out)
	}

	// Schema v2: a ballooned domain on a two-image qcow2 chain (made with
	// qemu-img) starts through libvirt: the hook measures the balloon and
	// both images instead of refusing them, QEMU holds both measured
	// files, and the customer's verify of the bundle passes.
	t.Run("balloon and qcow2 chain", func(t *testing.T) {
		qimg, err := exec.LookPath("qemu-img")
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("qemu-img not installed (Debian's qemu-utils; .ci/run installs it)")
			}
			t.Skip("qemu-img not installed")
		}
		const id2 = "vmledger-e2e-lv02"
		base := writeFile(t, filepath.Join(imageDir, "lv02-base.raw"), make([]byte, 1<<20), 0o644)
		top := filepath.Join(imageDir, "lv02-top.qcow2")
		if out, err := exec.Command(qimg, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, top).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v\n%s", err, out)
		}
		os.Chmod(top, 0o644)
		if err := os.MkdirAll(filepath.Join(store, id2), 0o700); err != nil {
			t.Fatal(err)
		}
		secretFile := writeFile(t, filepath.Join(store, id2, "secret"), secret, 0o600)
		expected := writeFile(t, filepath.Join(store, id2, "expected.json"), fmt.Appendf(nil, `{
  "schema": "vmledger/config/v2",
  "memory": "64MiB",
  "balloon": "48MiB",
  "cpu": {"count": 1},
  "nics": [{"mac": "52:54:00:12:34:58"}],
  "disks": [{"target": "vda", "path": %q, "format": "qcow2"}]
}
`, top), 0o644)
		xml := writeFile(t, d.path("lv02.xml"), fmt.Appendf(nil, `<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <currentMemory unit='MiB'>48</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    <interface type='user'><mac address='52:54:00:12:34:58'/><model type='virtio'/></interface>
  </devices>
</domain>
`, id2, top), 0o644)
		out, err := virsh(t, "create", xml)
		if err != nil {
			t.Fatalf("virsh create (balloon and qcow2 chain): %v\n%s", err, out)
		}
		state, _ := virsh(t, "domstate", id2)
		virsh(t, "destroy", id2)
		if !strings.Contains(state, "running") {
			t.Errorf("virsh domstate %s = %q, want running", id2, state)
		}
		bundle := filepath.Join(store, id2, "bundle")
		r, rep := verify(t, "--bundle", bundle, "--trust", d.trust, "--expected", expected, "--vm-secret", secretFile, "--vm", id2)
		if r.code != 0 || !rep.OK || len(rep.failed()) > 0 {
			t.Errorf("verify of the hook's bundle: exit %d, failed %q\n%s", r.code, rep.failed(), r)
		}
		manifest, err := os.ReadFile(filepath.Join(store, id2, "manifest.json"))
		if err != nil || !strings.Contains(string(manifest), `"vmledger/config/v2"`) || !strings.Contains(string(manifest), `"memory.balloon.bytes"`) || !strings.Contains(string(manifest), `"disk.0.backing"`) {
			t.Errorf("the hook's manifest (%v) is not a v2 one with the balloon and the chain:\n%.400s", err, manifest)
		}
	})

	// A host that swaps the image for QEMU's open (at libvirt's "start",
	// after the hook measured it at "prepare") and swaps it back before
	// "started": the path names the measured file again, but QEMU holds
	// the attacker's. The hook checks what QEMU holds open and refuses.
	evil := writeFile(t, filepath.Join(imageDir, "evil.raw"), append([]byte("the attacker's image"), make([]byte, 1<<20-20)...), 0o644)
	writeFile(t, hookScript, fmt.Appendf(nil, `#!/bin/sh
img=%[1]s
if [ "$2" = start ] && [ "$3" = begin ]; then mv "$img" "$img.measured" && cp %[2]s "$img"; fi
if [ "$2" = started ] && [ "$3" = begin ]; then mv "$img.measured" "$img"; fi
%[3]s`, image, evil, hookLine), 0o755)
	out, err = virsh(t, "create", domain("", ""))
	if err == nil {
		virsh(t, "destroy", id)
		t.Fatalf("virsh create started the domain with the attacker's image swapped in around QEMU's open\n%s", out)
	}
	if !strings.Contains(out, "Hook script execution failed") || !strings.Contains(out, "does not hold the measured file of vda") {
		t.Errorf("virsh create (image swapped around QEMU's open): %v; want the hook's refusal at started\n%s", err, out)
	}
}

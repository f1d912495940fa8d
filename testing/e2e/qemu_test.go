package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// qemuBinary is Debian's qemu-system-x86_64 (package qemu-system-x86). The
// test skips without it unless VMLEDGER_REQUIRE_QEMU=1.
func qemuBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("VMLEDGER_REQUIRE_QEMU") == "1" {
			t.Fatalf("qemu-system-x86_64: %v (install qemu-system-x86)", err)
		}
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	return p
}

// qmp is a QMP client on a unix socket.
type qmp struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialQMP(t *testing.T, path string, done <-chan struct{}) *qmp {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			q := &qmp{t: t, conn: conn, r: bufio.NewReader(conn)}
			q.read() // the greeting
			q.do("qmp_capabilities", nil)
			return q
		}
		select {
		case <-done:
			t.Fatalf("the launched process exited before its QMP socket %s answered", path)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("QMP socket %s: %v", path, err)
		}
		time.Sleep(pollInterval)
	}
}

func (q *qmp) read() map[string]json.RawMessage {
	q.t.Helper()
	for {
		q.conn.SetReadDeadline(time.Now().Add(readyTimeout))
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			q.t.Fatalf("QMP: %v", err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(line, &m); err != nil {
			q.t.Fatalf("QMP: %v: %s", err, line)
		}
		if _, ev := m["event"]; !ev {
			return m
		}
	}
}

// do runs a QMP command and decodes its return value into out (if not nil).
func (q *qmp) do(command string, args any, out ...any) {
	q.t.Helper()
	msg := map[string]any{"execute": command}
	if args != nil {
		msg["arguments"] = args
	}
	b, _ := json.Marshal(msg)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		q.t.Fatalf("QMP %s: %v", command, err)
	}
	m := q.read()
	if e, ok := m["error"]; ok {
		q.t.Fatalf("QMP %s: %s", command, e)
	}
	if len(out) > 0 {
		if err := json.Unmarshal(m["return"], out[0]); err != nil {
			q.t.Fatalf("QMP %s: %v: %s", command, err, m["return"])
		}
	}
}

// TestLaunchQEMU: `agent launch --qemu` builds QEMU's command line from the
// measured configuration. QEMU (TCG, started paused) is asked over QMP what
// it runs: its name, memory, vCPUs, block devices and NICs equal the
// measured configuration, its process is pinned to the measured CPUs, and
// the disk it reads is the measured image although the path was swapped
// for an attacker's right after measurement. Operator arguments outside the
// allowlist are refused.
func TestLaunchQEMU(t *testing.T) {
	qemu := qemuBinary(t)
	d := deploy(t)
	const size = 1 << 20
	pad := func(s string) []byte { return append([]byte(s), make([]byte, size-len(s))...) }
	disk := writeFile(t, d.path("q01-disk.raw"), pad("the measured disk image\n"), 0o644)
	ovmf, err := os.ReadFile("/usr/share/OVMF/OVMF_CODE_4M.fd") // Debian's ovmf, which qemu-system-x86 recommends
	if err != nil {
		t.Skipf("no OVMF to use as the loader: %v", err)
	}
	loader := writeFile(t, d.path("q01-OVMF_CODE.fd"), ovmf, 0o644)
	affinity := "0"
	if runtime.NumCPU() >= 2 {
		affinity = "1"
	}
	v := vm{id: "q01", secret: d.newSecret("q01.secret"), config: writeFile(t, d.path("q01.json"), fmt.Appendf(nil, `{
  "schema": "vmledger/config/v1",
  "memory": "128MiB",
  "cpu": {"count": 2, "affinity": %q},
  "nics": [{"mac": "52:54:00:12:34:56"}],
  "disks": [{"target": "vda", "path": %q}],
  "boot": {"loader": {"path": %q}}
}
`, affinity, disk, loader), 0o644)}
	base := []string{"agent", "launch", "--vm", v.id, "--config", v.config, "--vm-secret", v.secret,
		"--coproc", d.coproc(), "--log", d.logURL, "--trust", d.trust, "--qemu", qemu, "--nic", "user"}

	t.Run("operator argument not allowed", func(t *testing.T) {
		for _, extra := range [][]string{
			{"-drive", "file=" + disk + ",if=virtio"},
			{"-append", "init=/bin/sh"},
			{"-accel", "xen"},
			{"-S", "-device", "vfio-pci,host=03:00.0"},
		} {
			r := vmledger(t, append(append(base, "--"), extra...)...)
			if r.code != 2 || !strings.Contains(r.stderr, "not an allowed QEMU argument") {
				t.Errorf("launch --qemu -- %s: exit %d; want exit 2, the argument refused\n%s", strings.Join(extra, " "), r.code, r)
			}
		}
	})

	sock := d.path("q01.qmp")
	args := append(base, "--", "-S", "-display", "none", "-accel", "tcg", "-qmp", "unix:"+sock+",server=on,wait=off")
	run := startQEMULaunch(t, sock, func() error {
		// Between measurement and launch: replace the image on its path,
		// overwrite the loader in place.
		tmp := d.path("q01-evil.raw")
		if err := os.WriteFile(tmp, pad("the attacker's disk image\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, disk); err != nil {
			return err
		}
		return os.WriteFile(loader, append([]byte("the attacker's firmware"), ovmf[23:]...), 0o644)
	}, args...)
	defer run.quit()
	q, dump, cmd := run.q, run.dump, run.cmd
	quit := run.quit

	var name struct{ Name string }
	q.do("query-name", nil, &name)
	var mem struct {
		BaseMemory uint64 `json:"base-memory"`
	}
	q.do("query-memory-size-summary", nil, &mem)
	var cpus []struct {
		CPUIndex int `json:"cpu-index"`
		ThreadID int `json:"thread-id"`
	}
	q.do("query-cpus-fast", nil, &cpus)
	var blocks []struct {
		Device   string
		Inserted *struct {
			File  string
			Image struct {
				Format      string
				VirtualSize int64 `json:"virtual-size"`
			}
		}
	}
	q.do("query-block", nil, &blocks)
	var nics []struct {
		Name    string
		MainMAC string `json:"main-mac"`
	}
	q.do("query-rx-filter", nil, &nics)

	if name.Name != "q01" {
		t.Errorf("query-name = %q, want q01", name.Name)
	}
	if mem.BaseMemory != 128<<20 {
		t.Errorf("base memory %d, want %d (128MiB)", mem.BaseMemory, 128<<20)
	}
	if len(cpus) != 2 {
		t.Errorf("query-cpus-fast: %d vCPUs, want 2", len(cpus))
	}
	devices := map[string]string{} // device → file
	for _, b := range blocks {
		if b.Inserted != nil {
			devices[b.Device] = b.Inserted.File
		}
	}
	if len(blocks) != 2 || devices["vda"] != "/dev/fdset/1" || devices["pflash0"] != "/dev/fdset/2" ||
		blocks[0].Inserted.Image.Format != "raw" || blocks[0].Inserted.Image.VirtualSize != size {
		t.Errorf("query-block = %+v; want vda (raw, %d bytes) on /dev/fdset/1 and the loader pflash0 on /dev/fdset/2, nothing else", blocks, size)
	}
	if len(nics) != 1 || nics[0].MainMAC != "52:54:00:12:34:56" {
		t.Errorf("query-rx-filter = %+v; want one NIC with MAC 52:54:00:12:34:56", nics)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "Cpus_allowed_list:\t"+affinity+"\n") {
		t.Errorf("QEMU's CPU affinity is not the measured %q:\n%s", affinity, status)
	}
	// What QEMU reads from vda: the measured image, not the one now on the path.
	q.do("human-monitor-command", map[string]string{"command-line": `qemu-io vda "read -v 0 16"`})
	q.do("human-monitor-command", map[string]string{"command-line": `qemu-io pflash0 "read -v 0 16"`})
	onPath, _ := os.ReadFile(disk)
	if !bytes.HasPrefix(onPath, []byte("the attacker's")) {
		t.Fatalf("the image on the path was not swapped: %.30q", onPath)
	}
	quit()
	if want := "74 68 65 20 6d 65 61 73 75 72 65 64 20 64 69 73"; !strings.Contains(dump(), want) {
		t.Errorf("QEMU's read of vda is not the measured image (want %q in its output)", want)
	}
	var hexOVMF []string
	for _, b := range ovmf[:16] {
		hexOVMF = append(hexOVMF, fmt.Sprintf("%02x", b))
	}
	if want := "00000000:  " + strings.Join(hexOVMF, " "); !strings.Contains(dump(), want) {
		t.Errorf("QEMU's read of the loader is not the measured firmware (want %q in its output)", want)
	}
}

// qemuLaunch is a running `agent launch --qemu` that became QEMU.
type qemuLaunch struct {
	q    *qmp
	cmd  *exec.Cmd
	quit func()        // asks QEMU to quit and waits for it
	dump func() string // what the agent and QEMU printed
}

// startQEMULaunch runs `vmledger args…`, runs meddle while the agent is
// stopped right after it logged that it measured (after hashing, before
// the launch), and connects to the QMP socket sock of the QEMU the agent
// becomes.
func startQEMULaunch(t *testing.T, sock string, meddle func() error, args ...string) *qemuLaunch {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, vmledgerBin, args...)
	var stdout bytes.Buffer
	var mu sync.Mutex
	cmd.Stdout = &lockedWriter{mu: &mu, w: &stdout}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var stderr strings.Builder
	meddled := make(chan error, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			stderr.WriteString(line + "\n")
			mu.Unlock()
			if !sent && strings.Contains(line, "msg=measured ") {
				sent = true
				cmd.Process.Signal(syscall.SIGSTOP)
				err := meddle()
				cmd.Process.Signal(syscall.SIGCONT)
				meddled <- err
			}
		}
		cmd.Wait()
	}()
	r := &qemuLaunch{cmd: cmd, dump: func() string {
		mu.Lock()
		defer mu.Unlock()
		return "--- stdout\n" + stdout.String() + "--- stderr\n" + stderr.String()
	}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(r.dump())
		}
	})
	r.q = dialQMP(t, sock, done)
	r.quit = sync.OnceFunc(func() {
		r.q.conn.Write([]byte(`{"execute": "quit"}` + "\n")) // QEMU may close before it answers
		<-done
	})
	select {
	case err := <-meddled:
		if err != nil {
			r.quit()
			t.Fatalf("meddling after measurement: %v", err)
		}
	default:
		r.quit()
		t.Fatal("QEMU runs but the agent never logged that it measured")
	}
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// multibootKernel is a tiny multiboot kernel (flat binary, "a.out kludge"
// header) loaded at 1 MiB: it halts forever, and marker follows its code,
// so a test can read from guest memory which kernel QEMU loaded.
func multibootKernel(marker string) []byte {
	const magic, flags, base uint32 = 0x1BADB002, 0x00010000, 0x100000
	k := make([]byte, 0x40)
	le := func(off int, v uint32) {
		k[off], k[off+1], k[off+2], k[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	le(0, magic)
	le(4, flags)
	sum := magic + flags
	le(8, -sum)                              // the three fields add up to 0 mod 2^32
	le(12, base)                             // header_addr
	le(16, base)                             // load_addr
	le(20, 0)                                // load_end_addr: the whole file
	le(24, 0)                                // bss_end_addr: none
	le(28, base+0x20)                        // entry_addr
	copy(k[0x20:], []byte{0xf4, 0xeb, 0xfd}) // hlt; jmp hlt
	return append(k, marker...)
}

// TestLaunchQEMUKernel: the kernel QEMU boots is the measured one, from
// its sealed copy, although the file was overwritten right after
// measurement; the guest runs until the kernel is in its memory, and the
// test reads it there.
func TestLaunchQEMUKernel(t *testing.T) {
	qemu := qemuBinary(t)
	d := deploy(t)
	const measured, evil = "vmledger: the measured kernel", "vmledger: the attacker's kernel"
	kernel := writeFile(t, d.path("k01.kernel"), multibootKernel(measured), 0o644)
	v := vm{id: "k01", secret: d.newSecret("k01.secret"), config: writeFile(t, d.path("k01.json"), fmt.Appendf(nil, `{
  "schema": "vmledger/config/v1",
  "memory": "64MiB",
  "cpu": {"count": 1},
  "boot": {"kernel": {"path": %q}, "cmdline": "console=ttyS0 measured=1"}
}
`, kernel), 0o644)}
	sock := d.path("k01.qmp")
	run := startQEMULaunch(t, sock, func() error {
		return os.WriteFile(kernel, multibootKernel(evil), 0o644)
	}, "agent", "launch", "--vm", v.id, "--config", v.config, "--vm-secret", v.secret,
		"--coproc", d.coproc(), "--log", d.logURL, "--trust", d.trust, "--qemu", qemu,
		"--", "-S", "-display", "none", "-accel", "tcg", "-qmp", "unix:"+sock+",server=on,wait=off")
	defer run.quit()
	run.q.do("cont", nil)
	// The firmware's multiboot loader copies the kernel to 1 MiB; wait
	// until it has, then read the marker there.
	var got string
	deadline := time.Now().Add(readyTimeout)
	for {
		var out string
		run.q.do("human-monitor-command", map[string]string{"command-line": fmt.Sprintf("xp /%dxb 0x100040", len(measured))}, &out)
		got = hmpBytes(out)
		if strings.HasPrefix(got, "vmledger: the ") || time.Now().After(deadline) {
			break
		}
		time.Sleep(pollInterval)
	}
	if got != measured {
		t.Errorf("guest memory at 1 MiB + 0x40 holds %q, want the measured kernel's %q", got, measured)
	}
}

// hmpBytes decodes the bytes of an HMP "xp /Nxb" dump
// ("0000000000100040: 0x76 0x6d …").
func hmpBytes(out string) string {
	var b []byte
	for _, line := range strings.Split(out, "\n") {
		_, rest, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(rest) {
			var v byte
			if _, err := fmt.Sscanf(f, "0x%02x", &v); err == nil {
				b = append(b, v)
			}
		}
	}
	return string(b)
}

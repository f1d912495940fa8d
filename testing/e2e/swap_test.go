package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// launchPausedAfterMeasure runs `vmledger agent launch args…` and, as soon
// as the agent logs that it measured the configuration, stops it
// (SIGSTOP), runs meddle, and lets it go on (SIGCONT): meddle happens after
// the images were hashed and before anything is launched, however long the
// log round trip takes.
func launchPausedAfterMeasure(t *testing.T, meddle func(), args ...string) *result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vmledgerBin, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	meddled := false
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		line := sc.Text()
		stderr.WriteString(line + "\n")
		if !meddled && strings.Contains(line, "msg=measured ") {
			if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			meddle()
			meddled = true
			if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	r := &result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("did not finish within %v\n%s", commandTimeout, r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if !meddled {
		t.Fatalf("the agent never logged that it measured\n%s", r)
	}
	return r
}

func sha256Hex(b string) string {
	s := sha256.Sum256([]byte(b))
	return hex.EncodeToString(s[:])
}

// TestLaunchSwapAfterMeasure: images replaced on their paths right after
// the agent measured them reach neither the verification (the attested
// root is the measured images') nor the launched command, which reads the
// measured ones through the descriptors the agent hashed them through
// (VMLEDGER_FD_VDA, VMLEDGER_FD_KERNEL). An image changed in place (same
// file) after measurement makes the agent refuse to launch.
func TestLaunchSwapAfterMeasure(t *testing.T) {
	d := deploy(t)
	const (
		ordered = "the disk image the owner ordered\n"
		kernelV = "the kernel the owner ordered\n"
		evil    = "the attacker's image\n"
	)
	setup := func(name string) (vm, string, string) {
		disk := writeFile(t, d.path(name+"-disk.img"), []byte(ordered), 0o644)
		kernel := writeFile(t, d.path(name+"-vmlinuz"), []byte(kernelV), 0o644)
		v := vm{id: name, secret: d.newSecret(name + ".secret"), config: writeFile(t, d.path(name+".json"), fmt.Appendf(nil, `{
  "schema": "vmledger/config/v1",
  "memory": "1GiB",
  "cpu": {"count": 1},
  "disks": [{"target": "vda", "path": %q}],
  "boot": {"kernel": {"path": %q}, "cmdline": "console=ttyS0"}
}
`, disk, kernel), 0o644)}
		return v, disk, kernel
	}
	base := func(v vm) []string {
		return []string{"agent", "launch", "--vm", v.id, "--config", v.config, "--vm-secret", v.secret,
			"--coproc", d.coproc(), "--log", d.logURL, "--trust", d.trust}
	}

	t.Run("replaced on the path", func(t *testing.T) {
		v, disk, kernel := setup("swap01")
		want := measuredRoot(t, v)
		out := d.path("swap01.out")
		args := append(base(v), "--", "/bin/sh", "-c",
			`sha256sum /dev/fd/"$VMLEDGER_FD_VDA" "$1" /dev/fd/"$VMLEDGER_FD_KERNEL" "$2" > "$3"`, "sh", disk, kernel, out)
		r := launchPausedAfterMeasure(t, func() {
			for _, p := range []string{disk, kernel} {
				tmp := writeFile(t, p+".evil", []byte(evil), 0o644)
				if err := os.Rename(tmp, p); err != nil {
					t.Fatal(err)
				}
			}
		}, args...)
		if r.code != 0 || !strings.Contains(r.stderr, "config root   "+want) {
			t.Fatalf("launch: exit %d; want exit 0 and the root of the measured images %s\n%s", r.code, want, r)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("the command did not run: %v\n%s", err, r)
		}
		var sums []string
		for _, l := range strings.Split(strings.TrimSpace(string(got)), "\n") {
			sums = append(sums, strings.Fields(l)[0])
		}
		wantSums := []string{sha256Hex(ordered), sha256Hex(evil), sha256Hex(kernelV), sha256Hex(evil)}
		what := []string{"the disk descriptor", "the disk path (swapped)", "the kernel descriptor", "the kernel path (swapped)"}
		if len(sums) != len(wantSums) {
			t.Fatalf("command output %q, want 4 digests\n%s", got, r)
		}
		for i := range sums {
			if sums[i] != wantSums[i] {
				t.Errorf("%s hashes to %s, want %s", what[i], sums[i], wantSums[i])
			}
		}
		if !strings.Contains(r.stderr, "image path now names another file") {
			t.Errorf("launch did not warn that the paths moved\n%s", r)
		}
	})

	t.Run("changed in place", func(t *testing.T) {
		v, disk, _ := setup("swap02")
		marker := d.path("swap02.launched")
		args := append(base(v), "--", "/bin/sh", "-c", `echo launched > "$1"`, "sh", marker)
		r := launchPausedAfterMeasure(t, func() {
			f, err := os.OpenFile(disk, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(evil)
			f.Close()
		}, args...)
		mustBeRefused(t, r, marker, 3, "image changed after it was measured")
	})

	t.Run("writable by others", func(t *testing.T) {
		v, disk, _ := setup("swap03")
		if err := os.Chmod(disk, 0o666); err != nil {
			t.Fatal(err)
		}
		marker := d.path("swap03.launched")
		r := vmledger(t, append(base(v), "--", "/bin/sh", "-c", `echo launched > "$1"`, "sh", marker)...)
		// An image writable by others is refused (exit 3): anyone could have
		// changed what was measured.
		mustBeRefused(t, r, marker, 3, "image is writable by others")
	})
}

// mustBeRefused checks that a launch exited with code and reason and ran
// nothing.
func mustBeRefused(t *testing.T, r *result, marker string, code int, reason string) {
	t.Helper()
	const aborted = "attestation failed, launch aborted"
	if i := strings.Index(r.stderr, aborted); r.code != code || i < 0 || !strings.Contains(r.stderr[i:], reason) {
		t.Errorf("launch: exit %d; want exit %d, %q with %q\n%s", r.code, code, aborted, reason, r)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the command ran (stat %s: %v)", marker, err)
	}
}

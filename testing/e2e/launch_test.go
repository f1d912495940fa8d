package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/attest"
)

// launchCase is one `vmledger agent launch` with one thing wrong.
type launchCase struct {
	name string
	// args are the launch arguments; the command writes marker.
	args   []string
	marker string
	// reason must appear in stderr after "attestation failed, launch
	// aborted".
	reason string
}

// mustRefuse runs a launch that must be refused: exit 3, the abort logged
// with its reason, and the command never run.
func mustRefuse(t *testing.T, c launchCase) {
	t.Helper()
	mustAbort(t, c, 3)
}

// mustNotComplete runs a launch that cannot complete (a part of the chain
// is down): exit 4, the abort logged with its reason, nothing run.
func mustNotComplete(t *testing.T, c launchCase) {
	t.Helper()
	mustAbort(t, c, 4)
}

func mustAbort(t *testing.T, c launchCase, code int) {
	t.Helper()
	r := vmledger(t, c.args...)
	if r.code != code {
		t.Errorf("agent launch (%s): exit %d, want %d\n%s", c.name, r.code, code, r)
	}
	const aborted = "attestation failed, launch aborted"
	if i := strings.Index(r.stderr, aborted); i < 0 || !strings.Contains(r.stderr[i:], c.reason) {
		t.Errorf("agent launch (%s): stderr lacks %q with the reason %q\n%s", c.name, aborted, c.reason, r)
	}
	if _, err := os.Stat(c.marker); !os.IsNotExist(err) {
		t.Errorf("agent launch (%s): the command ran (stat %s: %v), want nothing launched\n%s", c.name, c.marker, err, r)
	}
}

// mustLaunch runs a launch that must run its command.
func mustLaunch(t *testing.T, name string, args []string, marker string) {
	t.Helper()
	r := vmledger(t, args...)
	if _, err := os.Stat(marker); r.code != 0 || err != nil {
		t.Fatalf("agent launch (%s): exit %d, marker: %v; want exit 0 and the command run\n%s", name, r.code, err, r)
	}
}

// TestLaunchRefused shows that `vmledger agent launch` runs nothing, and
// exits 3 with the reason, when any key is wrong, or 4 when any component
// is stopped: each case differs from a launch that works in that one thing.
func TestLaunchRefused(t *testing.T) { testLaunchRefused(t, deploy(t)) }

// TestLaunchRefusedTessera: the same refusals with the log on the Tessera
// engine (MariaDB).
func TestLaunchRefusedTessera(t *testing.T) { testLaunchRefused(t, deployTessera(t)) }

func testLaunchRefused(t *testing.T, d *deployment) {
	app := d.newVM("app01", "4GiB", 0x70)
	marker := func(name string) string { return d.path(name + ".launched") }

	// The control: everything right, including --expected.
	mustLaunch(t, "control", launchArgs(d, app, d.coproc(), d.trust, marker("control"), "--expected", app.config), marker("control"))
	// With a state file, every launch proves the log consistent with the
	// one before, not only the first.
	state := d.path("launch-state.json")
	for _, m := range []string{"state-1", "state-2"} {
		mustLaunch(t, m, launchArgs(d, app, d.coproc(), d.trust, marker(m), "--expected", app.config, "--state", state), marker(m))
	}

	ran := d.writeConfig("app01-ran.json", "6GiB", 0x70) // one parameter changed
	stranger := d.softKey("stranger")
	otherLogVKey := strings.TrimSpace(mustRun(t, "keygen", "--name", origin, "--out", d.path("other-log.key")).stdout)
	withRan := app
	withRan.config = ran

	// Enrolment needs the log's admin token: with another one, the key
	// stays unknown to the log (the next case shows it).
	wrongToken := writeFile(t, d.path("wrong.token"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	if r := vmledger(t, "log", "enroll", "--log", d.logURL, "--admin-token-file", wrongToken, "--key", stranger.pem); r.code != 1 || !strings.Contains(r.stderr, "the log refused the admin token") {
		t.Errorf("log enroll with a wrong admin token: exit %d; want exit 1, the token refused\n%s", r.code, r)
	}

	for _, c := range []launchCase{
		{
			name:   "changed parameter",
			args:   launchArgs(d, withRan, d.coproc(), d.trust, marker("changed"), "--expected", app.config),
			marker: marker("changed"),
			reason: "attested configuration is not the expected one",
		},
		{
			name:   "co-processor key not enrolled",
			args:   launchArgs(d, app, stranger.spec, d.trust, marker("unenrolled"), "--expected", app.config),
			marker: marker("unenrolled"),
			reason: "unknown-key",
		},
		{
			name: "co-processor key not in the trust file",
			args: launchArgs(d, app,
				d.coproc(), d.writeTrust("trust-other-coproc.txt", d.logVKey, d.witnessLines, "coprocessor host-a "+stranger.pem),
				marker("untrusted-coproc"), "--expected", app.config),
			marker: marker("untrusted-coproc"),
			reason: "not signed by a trusted co-processor",
		},
		{
			name: "log key not in the trust file",
			args: launchArgs(d, app,
				d.coproc(), d.writeTrust("trust-other-log.txt", otherLogVKey, d.witnessLines, "coprocessor host-a "+d.tpmPEM),
				marker("untrusted-log"), "--expected", app.config),
			marker: marker("untrusted-log"),
			reason: "not signed by a trusted log",
		},
	} {
		t.Run(c.name, func(t *testing.T) { mustRefuse(t, c) })
	}

	// A key enrolled, then revoked: launches stop at once.
	t.Run("co-processor key revoked", func(t *testing.T) {
		trust := d.writeTrust("trust-with-stranger.txt", d.logVKey, d.witnessLines,
			"coprocessor host-a "+d.tpmPEM+"\ncoprocessor host-b "+stranger.pem)
		mustRun(t, "log", "enroll", "--log", d.logURL, "--admin-token-file", d.adminToken, "--key", stranger.pem, "--name", "host-b")
		mustLaunch(t, "enrolled software key", launchArgs(d, app, stranger.spec, trust, marker("host-b"), "--expected", app.config), marker("host-b"))
		// The DESIGN form, --key PEM (--keyid ID names the same key).
		if r := mustRun(t, "log", "revoke", "--log", d.logURL, "--admin-token-file", d.adminToken, "--key", stranger.pem); !strings.Contains(r.stdout, stranger.keyID) {
			t.Errorf("log revoke --key printed %q, want the record of key %s", r.stdout, stranger.keyID)
		}
		mustRefuse(t, launchCase{
			name:   "revoked key",
			args:   launchArgs(d, app, stranger.spec, trust, marker("revoked"), "--expected", app.config),
			marker: marker("revoked"),
			reason: "revoked-key",
		})
	})

	// Components stopped, one after the other. The swtpm comes back (on
	// another port) and a launch works again before the next one stops.
	t.Run("swtpm stopped", func(t *testing.T) {
		d.tpm.Kill()
		mustNotComplete(t, launchCase{
			name:   "swtpm stopped",
			args:   launchArgs(d, app, d.coproc(), d.trust, marker("no-tpm"), "--expected", app.config),
			marker: marker("no-tpm"),
			reason: "coproc open",
		})
		d.tpm.Restart()
		mustLaunch(t, "swtpm restarted", launchArgs(d, app, d.coproc(), d.trust, marker("tpm-back"), "--expected", app.config), marker("tpm-back"))
	})

	t.Run("2 of 3 witnesses stopped", func(t *testing.T) {
		d.witnesses[0].kill()
		d.witnesses[1].kill()
		// The reason is the agent's own, not just "deadline exceeded",
		// which any timeout (a hung co-processor, a log that never
		// answers) would also give.
		mustNotComplete(t, launchCase{
			name:   "2 of 3 witnesses stopped",
			args:   launchArgs(d, app, d.coproc(), d.trust, marker("one-witness"), "--expected", app.config, "--timeout", "5s"),
			marker: marker("one-witness"),
			reason: attest.ErrNotWitnessed.Error(),
		})
	})

	t.Run("log stopped", func(t *testing.T) {
		d.log.kill()
		mustNotComplete(t, launchCase{
			name:   "log stopped",
			args:   launchArgs(d, app, d.coproc(), d.trust, marker("no-log"), "--expected", app.config, "--timeout", "5s"),
			marker: marker("no-log"),
			reason: "the log is unreachable",
		})
	})
}

package crash

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/admission"
)

// keygen runs `vmledger keygen` and returns the verifier key it prints.
func keygen(ctx context.Context, bin, name, out string) (string, error) {
	b, err := exec.CommandContext(ctx, bin, "keygen", "--name", name, "--out", out).Output()
	if err != nil {
		return "", fmt.Errorf("vmledger keygen --name %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// LogServer is a `vmledger log serve` on a data directory that outlives its
// processes.
type LogServer struct {
	Bin      string
	Dir      string // holds key, token, data/ and log.txt
	Data     string // --data
	KeyFile  string
	VKey     string
	Origin   string
	Verifier note.Verifier
	Token    []byte
	Args     []string // extra flags of log serve
	Proc     *Process // the running process, nil before Start
}

// NewLogServer makes a log key and an admin token in dir; the data
// directory is dir/data unless data is not empty.
func NewLogServer(ctx context.Context, bin, dir, data string, args ...string) (*LogServer, error) {
	l := &LogServer{Bin: bin, Dir: dir, Data: data, KeyFile: filepath.Join(dir, "log.key"), Origin: "vmledger.test/ledger", Args: args}
	if l.Data == "" {
		l.Data = filepath.Join(dir, "data")
	}
	var err error
	if l.VKey, err = keygen(ctx, bin, l.Origin, l.KeyFile); err != nil {
		return nil, err
	}
	if l.Verifier, err = note.NewVerifier(l.VKey); err != nil {
		return nil, err
	}
	tok := make([]byte, 32)
	rand.Read(tok)
	l.Token = []byte(base64.StdEncoding.EncodeToString(tok))
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), append(l.Token, '\n'), 0o600); err != nil {
		return nil, err
	}
	return l, nil
}

// LogPath is the file that collects the stderr of every run.
func (l *LogServer) LogPath() string { return filepath.Join(l.Dir, "log.txt") }

func (l *LogServer) args() []string {
	return append([]string{"--log-format", "json", "log", "serve", "--data", l.Data, "--listen", "127.0.0.1:0",
		"--key", l.KeyFile, "--admin-token-file", filepath.Join(l.Dir, "admin.token")}, l.Args...)
}

// KillDuringStart starts the log and kills it with SIGKILL after d,
// whether or not it finished opening its engine and index by then: a crash
// during recovery.
func (l *LogServer) KillDuringStart(ctx context.Context, d time.Duration) error {
	return killDuringStart(ctx, l.Bin, l.LogPath(), l.args(), d)
}

func killDuringStart(ctx context.Context, bin, logPath string, args []string, d time.Duration) error {
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	fmt.Fprintf(lf, "=== start, to be killed after %v\n", d)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = lf
	if err := cmd.Start(); err != nil {
		return err
	}
	time.Sleep(d)
	cmd.Process.Kill()
	cmd.Wait()
	return nil
}

// Start starts the log (again) on its data directory.
func (l *LogServer) Start(ctx context.Context) error {
	p, err := Start(ctx, l.Bin, l.LogPath(), "log serving", l.args()...)
	if err != nil {
		return err
	}
	l.Proc = p
	return nil
}

// URL is the running log's base URL.
func (l *LogServer) URL() string { return l.Proc.URL }

// WaitCheckpoint polls /checkpoint until the log publishes one of at least
// size minSize, and returns it. The bound is generous: it is for readiness.
func (l *LogServer) WaitCheckpoint(ctx context.Context, hc *http.Client, minSize int64) ([]byte, error) {
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		b, err := Get(ctx, hc, l.URL()+"/checkpoint")
		if err == nil {
			c, err2 := OpenCheckpoint(b, l.Verifier)
			if err2 != nil {
				return nil, err2
			}
			if c.Size >= minSize {
				return b, nil
			}
			err = fmt.Errorf("published size %d < %d", c.Size, minSize)
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("no checkpoint of size ≥ %d within 2 minutes: %v", minSize, last)
}

// Enrol enrols a co-processor public key through the HTTP API.
func (l *LogServer) Enrol(ctx context.Context, hc *http.Client, name string, pub crypto.PublicKey) (admission.Key, error) {
	pemKey, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return admission.Key{}, err
	}
	ec := admission.EnrolClient{Base: l.URL(), Token: l.Token, HTTP: hc}
	k, _, err := ec.Enrol(ctx, name, pemKey)
	return k, err
}

// WitnessServer is a `vmledger witness serve` on a data directory that
// outlives its processes.
type WitnessServer struct {
	Bin     string
	Dir     string
	Name    string
	KeyFile string
	VKey    string // as keygen printed it (Ed25519 note key)
	Args    []string
	Proc    *Process
	Data    string // --data; Dir/data if empty
}

// NewWitnessServer makes a witness key and a --logs file naming the logs'
// verifier keys in dir.
func NewWitnessServer(ctx context.Context, bin, dir, name string, logVKeys []string, args ...string) (*WitnessServer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	w := &WitnessServer{Bin: bin, Dir: dir, Name: name, KeyFile: filepath.Join(dir, "witness.key"), Args: args}
	var err error
	if w.VKey, err = keygen(ctx, bin, name, w.KeyFile); err != nil {
		return nil, err
	}
	var logs strings.Builder
	for _, v := range logVKeys {
		fmt.Fprintf(&logs, "log %s\n", v)
	}
	if err := os.WriteFile(filepath.Join(dir, "logs"), []byte(logs.String()), 0o600); err != nil {
		return nil, err
	}
	return w, nil
}

// LogPath is the file that collects the stderr of every run.
func (w *WitnessServer) LogPath() string { return filepath.Join(w.Dir, "log.txt") }

func (w *WitnessServer) args() []string {
	data := w.Data
	if data == "" {
		data = filepath.Join(w.Dir, "data")
	}
	return append([]string{"--log-format", "json", "witness", "serve", "--data", data,
		"--listen", "127.0.0.1:0", "--key", w.KeyFile, "--logs", filepath.Join(w.Dir, "logs")}, w.Args...)
}

// KillDuringStart starts the witness and kills it with SIGKILL after d.
func (w *WitnessServer) KillDuringStart(ctx context.Context, d time.Duration) error {
	return killDuringStart(ctx, w.Bin, w.LogPath(), w.args(), d)
}

// Start starts the witness (again) on its data directory.
func (w *WitnessServer) Start(ctx context.Context) error {
	p, err := Start(ctx, w.Bin, w.LogPath(), "witness serving", w.args()...)
	if err != nil {
		return err
	}
	w.Proc = p
	return nil
}

// CheckNoSecrets returns an error if the log's stderr (every run) holds
// its admin token or its private key.
func (l *LogServer) CheckNoSecrets() error {
	key, err := os.ReadFile(l.KeyFile)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(l.LogPath())
	if err != nil {
		return err
	}
	text := string(b)
	// PRIVATE+KEY+<name>+<hash>+<base64 secret>: the name cannot contain
	// '+', the base64 can (cutting at the last '+' gave a few characters
	// that a log could contain by chance).
	fields := strings.SplitN(strings.TrimSpace(string(key)), "+", 5)
	if len(fields) != 5 || len(fields[4]) < 40 {
		return fmt.Errorf("%s: not a note private key", l.KeyFile)
	}
	secret := fields[4]
	switch {
	case strings.Contains(text, string(l.Token)):
		return fmt.Errorf("the log's stderr (%s) contains the admin token", l.LogPath())
	case strings.Contains(text, secret):
		return fmt.Errorf("the log's stderr (%s) contains the private key", l.LogPath())
	}
	return nil
}

package tesseralog

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/engine/enginetest"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/testing/mysqltest"
)

const origin = "test.example/log"

func newKey(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := tlog.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := tlog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func open(t testing.TB, c Config) *Engine {
	t.Helper()
	e, err := Open(t.Context(), c)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return e
}

func TestConformance(t *testing.T) {
	s, v := newKey(t)
	enginetest.Run(t, enginetest.Config{
		Verifier: v,
		NewLog: func(t *testing.T) func(t *testing.T) engine.Engine {
			dsn := mysqltest.NewDatabase(t)
			return func(t *testing.T) engine.Engine {
				return open(t, Config{DSN: dsn, Signer: s, BatchMaxAge: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond})
			}
		},
	})
}

func TestTrim(t *testing.T) {
	hashes := func(n int) []byte {
		b := make([]byte, n*tlog.HashSize)
		for i := range b {
			b[i] = byte(i / tlog.HashSize)
		}
		return b
	}
	for _, tc := range []struct {
		stored, width int // hashes stored; width asked (0: full)
		want          int // hashes returned, or -1 for ErrNotFound
	}{
		{1, 1, 1},
		{5, 3, 3},
		{5, 5, 5},
		{5, 6, -1},
		{5, 0, -1},
		{256, 0, 256},
		{256, 255, 255},
		{256, 1, 1},
	} {
		t.Run(fmt.Sprintf("tile %d→%d", tc.stored, tc.width), func(t *testing.T) {
			got, err := trimTile(hashes(tc.stored), uint8(tc.width))
			if tc.want < 0 {
				if !errors.Is(err, engine.ErrNotFound) {
					t.Errorf("trimTile(%d hashes, %d) = %v, want ErrNotFound", tc.stored, tc.width, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, hashes(tc.want)) {
				t.Errorf("trimTile(%d hashes, %d) = %d bytes, %v, want the first %d hashes", tc.stored, tc.width, len(got), err, tc.want)
			}
		})
		t.Run(fmt.Sprintf("bundle %d→%d", tc.stored, tc.width), func(t *testing.T) {
			var entries [][]byte
			for i := range tc.stored {
				entries = append(entries, bytes.Repeat([]byte{byte(i)}, i%7))
			}
			stored, _ := tlog.EncodeBundle(entries)
			got, err := trimBundle(stored, uint8(tc.width))
			if tc.want < 0 {
				if !errors.Is(err, engine.ErrNotFound) {
					t.Errorf("trimBundle(%d entries, %d) = %v, want ErrNotFound", tc.stored, tc.width, err)
				}
				return
			}
			want, _ := tlog.EncodeBundle(entries[:tc.want])
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("trimBundle(%d entries, %d) = %d bytes, %v, want the first %d entries", tc.stored, tc.width, len(got), err, tc.want)
			}
		})
	}
	for _, bad := range [][]byte{{0}, {0, 5, 'a'}} {
		if _, err := trimBundle(bad, 1); !errors.Is(err, tlog.ErrMalformed) {
			t.Errorf("trimBundle(%x, 1) = %v, want ErrMalformed", bad, err)
		}
	}
	if _, err := trimTile(make([]byte, 33), 1); !errors.Is(err, tlog.ErrMalformed) {
		t.Errorf("trimTile(33 bytes, 1) = %v, want ErrMalformed", err)
	}
}

// randSigner signs with fresh random bytes every time, like a
// non-deterministic signature scheme.
type randSigner struct{}

func (randSigner) Name() string    { return origin }
func (randSigner) KeyHash() uint32 { return 0x01020304 }
func (randSigner) Sign([]byte) ([]byte, error) {
	b := make([]byte, 64)
	rand.Read(b)
	return b, nil
}

// TestRecordingSigner: the first checkpoint per size wins, is what is
// published, and a conflicting one is refused with the evidence.
func TestRecordingSigner(t *testing.T) {
	ctx := t.Context()
	db, err := sql.Open("mysql", mysqltest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := applySchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	rs := &recordingSigner{inner: randSigner{}, db: db, log: slog.New(slog.DiscardHandler), ctx: ctx, timeout: time.Minute}
	root := func(b byte) tlog.Hash { return tlog.Hash(bytes.Repeat([]byte{b}, 32)) }
	sign := func(size uint64, r tlog.Hash) ([]byte, error) {
		return note.Sign(&note.Note{Text: string(tlog.Checkpoint{Origin: origin, Size: size, Root: r}.Marshal())}, rs)
	}

	first, err := sign(5, root(1))
	if err != nil {
		t.Fatalf("signing size 5: %v", err)
	}
	stored, err := readHistory(ctx, db, 5)
	if err != nil || !bytes.Equal(stored, first) {
		t.Fatalf("history at 5 = %q, %v, want the note Tessera got %q", stored, err, first)
	}
	again, err := sign(5, root(1))
	if err != nil || !bytes.Equal(again, first) {
		t.Errorf("signing size 5 again = %q, %v, want the stored %q", again, err, first)
	}

	for _, tc := range []struct {
		name string
		size uint64
		root tlog.Hash
	}{
		{"same size, other root", 5, root(2)},
		{"below the newest size", 4, root(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sign(tc.size, tc.root)
			var ce *ConflictError
			if !errors.As(err, &ce) || ce.Size != tc.size || !bytes.Equal(ce.Stored, first) {
				t.Fatalf("signing size %d root %x = %v, want a ConflictError with the stored checkpoint", tc.size, tc.root[:2], err)
			}
			if got, _ := readHistory(ctx, db, tc.size); tc.size != 5 && got != nil {
				t.Errorf("refused checkpoint %d was stored: %q", tc.size, got)
			}
		})
	}
	if got, _ := readHistory(ctx, db, 5); !bytes.Equal(got, first) {
		t.Errorf("history at 5 after the conflicts = %q, want %q", got, first)
	}
	if _, err := rs.Sign([]byte("other.example/log\n6\n" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")); err == nil {
		t.Errorf("signing a checkpoint of another origin succeeded")
	}
	if _, err := rs.Sign([]byte("not a checkpoint")); err == nil {
		t.Errorf("signing a malformed checkpoint succeeded")
	}
}

// TestTwoFrontEnds runs two engines on one database, appending at once:
// every entry is in the log exactly once, at the index its front-end
// returned, both serve the same checkpoint, and the whole log checks out
// through either.
func TestTwoFrontEnds(t *testing.T) {
	ctx := t.Context()
	s, v := newKey(t)
	dsn := mysqltest.NewDatabase(t)
	cfg := Config{DSN: dsn, Signer: s, BatchMaxAge: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond}
	fronts := []*Engine{open(t, cfg), open(t, cfg)}
	defer func() {
		for _, e := range fronts {
			e.Close()
		}
	}()

	const perFront = 400
	var mu sync.Mutex
	byIndex := map[uint64][]byte{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(128)
	for f, e := range fronts {
		for i := range perFront {
			g.Go(func() error {
				entry := fmt.Appendf(nil, "front-end %d entry %d", f, i)
				idx, err := e.Add(gctx, entry)
				if err != nil {
					return fmt.Errorf("front-end %d: Add(%q): %w", f, entry, err)
				}
				mu.Lock()
				defer mu.Unlock()
				if prev, ok := byIndex[idx]; ok {
					return fmt.Errorf("index %d returned for %q and for %q", idx, prev, entry)
				}
				byIndex[idx] = entry
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	want := make([][]byte, len(fronts)*perFront)
	for idx, entry := range byIndex {
		if idx >= uint64(len(want)) {
			t.Fatalf("index %d returned; the log should have exactly %d entries", idx, len(want))
		}
		want[idx] = entry
	}
	var cps [][]byte
	for f, e := range fronts {
		if err := enginetest.CheckLog(ctx, e, v, want); err != nil {
			t.Errorf("front-end %d: whole-log check: %v", f, err)
		}
		cp, err := e.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	if !bytes.Equal(cps[0], cps[1]) {
		t.Errorf("front-ends serve different checkpoints:\n%s\n%s", cps[0], cps[1])
	}
}

// TestPushback: with publication held up, the Add over the limit answers
// ErrPushback at once, and the held Adds complete once it resumes.
func TestPushback(t *testing.T) {
	ctx := t.Context()
	s, v := newKey(t)
	var hold atomic.Bool
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	const limit = 5
	e := open(t, Config{
		DSN: mysqltest.NewDatabase(t), Signer: s, PushbackMaxOutstanding: limit,
		BatchMaxAge: 10 * time.Millisecond, PollInterval: 10 * time.Millisecond,
		beforeSign: func() {
			if hold.Load() {
				select {
				case held <- struct{}{}:
				default:
				}
				<-release
			}
		},
	})
	defer e.Close()
	hold.Store(true)
	<-held // the publisher is stuck in Sign: nothing new gets published

	g, gctx := errgroup.WithContext(ctx)
	for i := range limit {
		g.Go(func() error {
			_, err := e.Add(gctx, fmt.Appendf(nil, "held %d", i))
			return err
		})
	}
	for e.outstanding.Load() < limit {
		time.Sleep(time.Millisecond)
	}
	if _, err := e.Add(ctx, []byte("one too many")); !errors.Is(err, engine.ErrPushback) {
		t.Errorf("Add over the limit = %v, want ErrPushback", err)
	}
	hold.Store(false)
	close(release)
	if err := g.Wait(); err != nil {
		t.Fatalf("held Adds: %v", err)
	}
	if _, err := e.Add(ctx, []byte("after")); err != nil {
		t.Errorf("Add after the backlog cleared = %v", err)
	}
	enginetest.Check(t, e, v, nil)
}

// TestOtherKeyRefused: a database holding one log is refused to a
// different origin and to another key of the same origin.
func TestOtherKeyRefused(t *testing.T) {
	s, _ := newKey(t)
	dsn := mysqltest.NewDatabase(t)
	e := open(t, Config{DSN: dsn, Signer: s})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	sameName, _ := newKey(t)
	skey, _, _ := tlog.GenerateKey(rand.Reader, "other.example/log")
	otherName, _, _ := tlog.NewSigner(skey)
	for _, tc := range []struct {
		name string
		s    note.Signer
	}{{"same origin, other key", sameName}, {"other origin", otherName}} {
		t.Run(tc.name, func(t *testing.T) {
			if e, err := Open(t.Context(), Config{DSN: dsn, Signer: tc.s}); err == nil {
				e.Close()
				t.Errorf("Open with %s succeeded", tc.name)
			}
		})
	}
	e = open(t, Config{DSN: dsn, Signer: s})
	e.Close()
}

func TestOpenRefusesBadConfig(t *testing.T) {
	s, _ := newKey(t)
	for _, tc := range []struct {
		name string
		c    Config
	}{
		{"no signer", Config{DSN: "u:p@tcp(127.0.0.1:1)/db"}},
		{"no database in DSN", Config{DSN: "u:p@tcp(127.0.0.1:1)/", Signer: s}},
		{"bad DSN", Config{DSN: "::::", Signer: s}},
		{"interval below 1s", Config{DSN: "u:p@tcp(127.0.0.1:1)/db", Signer: s, CheckpointInterval: 500 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if e, err := Open(t.Context(), tc.c); err == nil {
				e.Close()
				t.Errorf("Open(%+v) succeeded", tc.c)
			}
		})
	}
}

// TestSchemaMatchesTessera applies Tessera's own schema.sql (from the
// module cache) to one database and ours to another and compares the
// tables.
func TestSchemaMatchesTessera(t *testing.T) {
	ctx := t.Context()
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/transparency-dev/tessera").Output()
	if err != nil {
		t.Skipf("cannot locate Tessera's module with the go command: %v", err)
	}
	schema, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "storage", "mysql", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := sql.Open("mysql", mysqltest.NewDatabase(t)+"?multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	if _, err := theirs.ExecContext(ctx, string(schema)); err != nil {
		t.Fatalf("applying Tessera's schema.sql: %v", err)
	}
	ours, err := sql.Open("mysql", mysqltest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	if err := applySchema(ctx, ours); err != nil {
		t.Fatal(err)
	}
	show := func(db *sql.DB, table string) string {
		var name, create string
		if err := db.QueryRowContext(ctx, "SHOW CREATE TABLE `"+table+"`").Scan(&name, &create); err != nil {
			t.Fatalf("SHOW CREATE TABLE %s: %v", table, err)
		}
		return create
	}
	for _, table := range []string{"Tessera", "Checkpoint", "TreeState", "Subtree", "TiledLeaves"} {
		if got, want := show(ours, table), show(theirs, table); got != want {
			t.Errorf("table %s:\nours:    %s\nTessera: %s", table, got, want)
		}
	}
	var v1, v2 int
	theirs.QueryRowContext(ctx, "SELECT compatibilityVersion FROM Tessera WHERE id = 0").Scan(&v1)
	ours.QueryRowContext(ctx, "SELECT compatibilityVersion FROM Tessera WHERE id = 0").Scan(&v2)
	if v1 != v2 {
		t.Errorf("compatibility version: ours %d, Tessera's %d", v2, v1)
	}
}

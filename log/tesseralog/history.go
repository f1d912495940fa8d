package tesseralog

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/tlog"
)

// ConflictError reports that the log was asked to sign a checkpoint that
// contradicts its own history: a different root for a size it has already
// signed, or a size below one it has already signed (the database lost
// committed transactions, e.g. a restore or a failover to a stale replica).
// The engine refuses to sign; nothing is published until an operator
// intervenes. Stored and Refused are the evidence.
type ConflictError struct {
	Size    uint64 // the size Tessera asked to sign
	Stored  []byte // the signed checkpoint in the history that conflicts
	Refused []byte // the checkpoint text that was not signed
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("tesseralog: refusing to sign size %d: it conflicts with the checkpoint history (stored %q, asked %q)",
		e.Size, e.Stored, e.Refused)
}

// recordingSigner is the note.Signer given to Tessera. Sign records the
// signed checkpoint in vmledger_checkpoints, durably, before it returns the
// signature, so Tessera can publish nothing that is not in the history.
//
// Per size the first checkpoint wins: when Tessera signs a size again
// (every CheckpointInterval while the log is idle, after a restart, or from
// another front-end) and the text is identical, Sign returns the stored
// signature, so the published bytes stay exactly the history's bytes even
// with a signer that is not deterministic. A different text for a stored
// size, or a size below the newest stored one, is a *ConflictError.
type recordingSigner struct {
	inner note.Signer
	db    *sql.DB
	log   *slog.Logger
	// ctx bounds the database calls of Sign, which note.Signer gives no
	// context; it is the engine's lifetime.
	ctx     context.Context
	timeout time.Duration
	// beforeSign, if set, runs at the start of every Sign (tests only).
	beforeSign func()
}

func (r *recordingSigner) Name() string    { return r.inner.Name() }
func (r *recordingSigner) KeyHash() uint32 { return r.inner.KeyHash() }

func (r *recordingSigner) Sign(msg []byte) ([]byte, error) {
	if r.beforeSign != nil {
		r.beforeSign()
	}
	c, err := tlog.ParseCheckpoint(msg)
	if err != nil {
		return nil, fmt.Errorf("tesseralog: refusing to sign: %w", err)
	}
	if c.Origin != r.inner.Name() {
		return nil, fmt.Errorf("tesseralog: refusing to sign a checkpoint of origin %q with key %q", c.Origin, r.inner.Name())
	}
	sig, err := r.inner.Sign(msg)
	if err != nil {
		return nil, err
	}
	signed, err := note.Sign(&note.Note{Text: string(msg)}, fixedSigner{r.inner, sig})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	stored, err := recordCheckpoint(ctx, r.db, c, signed)
	if err != nil {
		var ce *ConflictError
		if errors.As(err, &ce) {
			r.log.Error("checkpoint conflicts with history; not signing", "size", ce.Size,
				"stored", string(ce.Stored), "refused", string(ce.Refused))
		}
		return nil, err
	}
	if bytes.Equal(stored, signed) {
		return sig, nil
	}
	// The same text was signed before, with another signature: hand back
	// the stored one so the published bytes equal the history's.
	return signatureOf(stored, r.inner)
}

// recordCheckpoint inserts signed (whose text is c) into the history unless
// a checkpoint of that size is already there, and returns the stored one.
// It stores nothing if the history already has a larger size. Tessera signs
// while it holds the TreeState row lock, so calls from all front-ends are
// serialised already; the locking read below makes the check-then-insert
// atomic regardless.
func recordCheckpoint(ctx context.Context, db *sql.DB, c tlog.Checkpoint, signed []byte) ([]byte, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("tesseralog: recording checkpoint %d: %w", c.Size, err)
	}
	defer tx.Rollback()
	// The newest stored checkpoint at or above this size: none, or this
	// size's own unless the history is ahead of the tree.
	var size uint64
	var stored []byte
	err = tx.QueryRowContext(ctx,
		"SELECT `size`, `note` FROM `vmledger_checkpoints` WHERE `size` >= ? ORDER BY `size` DESC LIMIT 1 FOR UPDATE",
		c.Size).Scan(&size, &stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO `vmledger_checkpoints` (`size`, `root`, `note`, `signed_at`) VALUES (?, ?, ?, ?)",
			c.Size, c.Root[:], signed, time.Now().UnixMilli()); err != nil {
			return nil, fmt.Errorf("tesseralog: recording checkpoint %d: %w", c.Size, err)
		}
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("tesseralog: recording checkpoint %d: %w", c.Size, err)
		}
		return signed, nil
	case err != nil:
		return nil, fmt.Errorf("tesseralog: reading the history at %d: %w", c.Size, err)
	}
	text := c.Marshal()
	if size != c.Size || !bytes.HasPrefix(stored, append(text, '\n')) {
		return nil, &ConflictError{Size: c.Size, Stored: stored, Refused: text}
	}
	return stored, nil
}

// readHistory returns the stored checkpoint of the given size, or nil.
func readHistory(ctx context.Context, db *sql.DB, size uint64) ([]byte, error) {
	var signed []byte
	err := db.QueryRowContext(ctx, "SELECT `note` FROM `vmledger_checkpoints` WHERE `size` = ?", size).Scan(&signed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tesseralog: reading checkpoint %d: %w", size, err)
	}
	return signed, nil
}

// latestHistory returns the newest stored checkpoint, or nil.
func latestHistory(ctx context.Context, db *sql.DB) ([]byte, error) {
	var signed []byte
	err := db.QueryRowContext(ctx, "SELECT `note` FROM `vmledger_checkpoints` ORDER BY `size` DESC LIMIT 1").Scan(&signed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tesseralog: reading the checkpoint history: %w", err)
	}
	return signed, nil
}

// signatureOf returns the signature by s's key on the signed note b
// (C2SP signed-note: "— name base64(keyhash ‖ signature)" lines after the
// blank line).
func signatureOf(b []byte, s note.Signer) ([]byte, error) {
	i := bytes.LastIndex(b, []byte("\n\n"))
	if i < 0 {
		return nil, errors.New("tesseralog: stored checkpoint is not a signed note")
	}
	for _, line := range strings.Split(string(b[i+2:]), "\n") {
		name, b64, ok := strings.Cut(strings.TrimPrefix(line, "— "), " ")
		if !ok || !strings.HasPrefix(line, "— ") || name != s.Name() {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) < 5 || binary.BigEndian.Uint32(raw) != s.KeyHash() {
			continue
		}
		return raw[4:], nil
	}
	return nil, fmt.Errorf("tesseralog: stored checkpoint has no signature by %s", s.Name())
}

// fixedSigner is s with a signature already made, so note.Sign lays out
// exactly the note that Tessera will publish.
type fixedSigner struct {
	s   note.Signer
	sig []byte
}

func (f fixedSigner) Name() string                    { return f.s.Name() }
func (f fixedSigner) KeyHash() uint32                 { return f.s.KeyHash() }
func (f fixedSigner) Sign(msg []byte) ([]byte, error) { return f.sig, nil }

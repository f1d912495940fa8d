package badgeropen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"google.golang.org/protobuf/proto"

	"github.com/vmledger/vmledger/internal/atomicfile"
)

// ErrMissingTables is returned by Open when the MANIFEST names table files
// that are not in the directory and Open cannot show that their data is
// still in the memtable logs. The error names the tables and why.
var ErrMissingTables = errors.New("badger MANIFEST names missing table files")

// The memtable log (NNNNN.mem) format of badger v4, as its logFile writes
// it: a 20-byte header (an 8-byte big-endian key ID, 0 without encryption,
// and a 12-byte IV), then records of
//
//	meta byte, user meta byte, uvarint key length, uvarint value length,
//	uvarint expiry, key, value, big-endian CRC-32C of all of the above
//
// up to the first record with an empty key, a key over 64 KiB, a short
// read or a CRC mismatch. The key ends in 8 bytes of MaxUint64 minus the
// version. A transaction's records carry bitTxn and are followed by one
// carrying bitFinTxn whose value is the commit version in decimal; badger
// replays a transaction only once it has read that record.
const (
	walHeaderSize = 20
	walExt        = ".mem"
	bitTxn        = 1 << 6
	bitFinTxn     = 1 << 7
)

// repairManifest handles the one state in which badger v4.9.6 leaves a
// MANIFEST naming a table file that is not there: a memtable flush creates
// the table file, appends it to the MANIFEST and fsyncs that, and only a
// later directory sync makes the file's name durable. A power cut in
// between loses the name but keeps the MANIFEST record.
//
// The flushed memtable's log survives such a cut: badger removes it only
// after the MANIFEST record, and a removal after the directory's last
// fsync is undone just like the creation (a journalling file system
// commits both in order; nothing else syncs the directory in between
// without making the table's name durable too). Replaying that log
// restores the table's data, so dropping the table from the MANIFEST is
// safe. repairManifest drops the missing tables only if it can check
// that:
//
//   - every missing table is on level 0 and newer than every table that is
//     there (a flush, not a compaction, and nothing synced since);
//   - the memtable logs hold every commit version after the newest one in
//     the tables that are there, without a gap, and at least one log per
//     missing table holds only such versions (so no flushed log is gone).
//
// Otherwise it returns an error wrapping ErrMissingTables and changes
// nothing. Versions are contiguous only in badger's normal (not managed)
// transaction mode, which is the only mode this project uses; an
// encrypted database is refused.
func repairManifest(ctx context.Context, opts badger.Options, logger *slog.Logger) error {
	path := filepath.Join(opts.Dir, badger.ManifestFilename)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("badgeropen: %w", err)
	}
	m, end, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	f.Close()
	if err != nil {
		return nil // badger.Open reports a damaged MANIFEST itself
	}
	var missing, present []uint64
	for id := range m.Tables {
		_, err := os.Stat(table.NewFilename(id, opts.Dir))
		switch {
		case errors.Is(err, os.ErrNotExist):
			missing = append(missing, id)
		case err != nil:
			return fmt.Errorf("badgeropen: %w", err)
		default:
			present = append(present, id)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	slices.Sort(present)
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s names tables %v that %s does not have, and %s",
			ErrMissingTables, path, missing, opts.Dir, fmt.Sprintf(format, args...))
	}
	if len(opts.EncryptionKey) > 0 {
		return refuse("the database is encrypted, so their data cannot be checked in the memtable logs")
	}
	for _, id := range missing {
		if lvl := m.Tables[id].Level; lvl != 0 {
			return refuse("table %d is on level %d: not a memtable flush", id, lvl)
		}
		if len(present) > 0 && id < present[len(present)-1] {
			return refuse("table %d is older than table %d, which is there", id, present[len(present)-1])
		}
	}
	var tableMax uint64
	for _, id := range present {
		v, err := tableMaxVersion(table.NewFilename(id, opts.Dir))
		if err != nil {
			return refuse("reading table %d: %v", id, err)
		}
		tableMax = max(tableMax, v)
	}
	logs, err := walVersionsIn(opts.Dir)
	if err != nil {
		return refuse("%v", err)
	}
	var newer []uint64 // versions after tableMax, over all logs
	whole := 0         // logs holding only versions after tableMax
	for _, l := range logs {
		if len(l.versions) > 0 && l.versions[0] > tableMax {
			whole++
		}
		for _, v := range l.versions {
			if v > tableMax {
				newer = append(newer, v)
			}
		}
	}
	slices.Sort(newer)
	newer = slices.Compact(newer)
	next := tableMax + 1
	for _, v := range newer {
		if v != next {
			return refuse("the memtable logs lack commit version %d (the tables end at version %d): their data may be lost", next, tableMax)
		}
		next++
	}
	if whole < len(missing) {
		return refuse("only %d memtable logs hold versions after %d, the newest in the tables: their data may be lost", whole, tableMax)
	}

	// Keep the MANIFEST as it is and add one change set deleting the
	// missing tables, as badger would after a compaction.
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("badgeropen: %w", err)
	}
	if int64(len(old)) < end {
		return refuse("the MANIFEST changed while being repaired")
	}
	var set pb.ManifestChangeSet
	for _, id := range missing {
		set.Changes = append(set.Changes, &pb.ManifestChange{Id: id, Op: pb.ManifestChange_DELETE})
	}
	rec, err := proto.Marshal(&set)
	if err != nil {
		return fmt.Errorf("badgeropen: %w", err)
	}
	data := slices.Clip(old[:end])
	data = binary.BigEndian.AppendUint32(data, uint32(len(rec)))
	data = binary.BigEndian.AppendUint32(data, crc32.Checksum(rec, y.CastagnoliCrcTable))
	data = append(data, rec...)
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("badgeropen: rewriting %s: %w", path, err)
	}
	logger.WarnContext(ctx, "dropped tables that a power cut took from the directory; their data is replayed from the memtable logs",
		"manifest", path, "tables", missing, "tables_end_at_version", tableMax, "logs_end_at_version", next-1)
	return nil
}

// tableMaxVersion reads the newest version in a table file from its index
// (badger's table footer: index, 4-byte index length, checksum, 4-byte
// checksum length).
func tableMaxVersion(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	pos := fi.Size()
	read := func(n int64) ([]byte, error) {
		if n < 0 || n > pos {
			return nil, fmt.Errorf("%s: bad table footer", path)
		}
		pos -= n
		b := make([]byte, n)
		_, err := f.ReadAt(b, pos)
		return b, err
	}
	b, err := read(4)
	if err != nil {
		return 0, err
	}
	chk, err := read(int64(binary.BigEndian.Uint32(b)))
	if err != nil {
		return 0, err
	}
	var sum pb.Checksum
	if err := proto.Unmarshal(chk, &sum); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if b, err = read(4); err != nil {
		return 0, err
	}
	index, err := read(int64(binary.BigEndian.Uint32(b)))
	if err != nil {
		return 0, err
	}
	if err := y.VerifyChecksum(index, &sum); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return fb.GetRootAsTableIndex(index, 0).MaxVersion(), nil
}

type walLog struct {
	name     string
	versions []uint64 // commit versions badger would replay, in order
}

// walVersionsIn reads the memtable logs in dir, oldest first.
func walVersionsIn(dir string) ([]walLog, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var logs []walLog
	var fids []uint64
	for _, de := range entries {
		name := de.Name()
		if !strings.HasSuffix(name, walExt) {
			continue
		}
		fid, err := strconv.ParseUint(strings.TrimSuffix(name, walExt), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("memtable log %s: bad name", name)
		}
		vs, err := walVersions(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		logs = append(logs, walLog{name: name, versions: vs})
		fids = append(fids, fid)
	}
	idx := make([]int, len(logs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return int(fids[a]) - int(fids[b]) })
	sorted := make([]walLog, len(logs))
	for i, j := range idx {
		sorted[i] = logs[j]
	}
	return sorted, nil
}

// walVersions returns the commit versions that badger's replay of the
// memtable log at path would apply.
func walVersions(path string) ([]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [walHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil // shorter than a header: nothing to replay
	}
	if binary.BigEndian.Uint64(hdr[:8]) != 0 {
		return nil, fmt.Errorf("memtable log %s is encrypted", filepath.Base(path))
	}
	var versions []uint64
	var pending uint64 // the version of the open transaction, 0 if none
	for {
		h := crc32.New(y.CastagnoliCrcTable)
		tr := &teeByteReader{r: r, h: h}
		meta, err1 := tr.ReadByte()
		_, err2 := tr.ReadByte()
		klen, err3 := binary.ReadUvarint(tr)
		vlen, err4 := binary.ReadUvarint(tr)
		_, err5 := binary.ReadUvarint(tr)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil || klen == 0 || klen > 1<<16 || vlen > math.MaxUint32 || int64(klen+vlen) > fi.Size() {
			return versions, nil
		}
		kv := make([]byte, klen+vlen)
		if _, err := io.ReadFull(tr, kv); err != nil {
			return versions, nil
		}
		var crc [4]byte
		if _, err := io.ReadFull(r, crc[:]); err != nil || binary.BigEndian.Uint32(crc[:]) != h.Sum32() {
			return versions, nil
		}
		key, value := kv[:klen], kv[klen:]
		if len(key) < 8 {
			return versions, nil
		}
		switch {
		case meta&bitTxn != 0:
			ts := y.ParseTs(key)
			if pending == 0 {
				pending = ts
			}
			if ts != pending {
				return versions, nil
			}
		case meta&bitFinTxn != 0:
			ts, err := strconv.ParseUint(string(value), 10, 64)
			if err != nil || ts != pending {
				return versions, nil
			}
			versions = append(versions, ts)
			pending = 0
		default:
			if pending != 0 {
				return versions, nil
			}
			versions = append(versions, y.ParseTs(key))
		}
	}
}

// teeByteReader reads from r and hashes what it reads.
type teeByteReader struct {
	r *bufio.Reader
	h io.Writer
}

func (t *teeByteReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.h.Write(p[:n])
	return n, err
}

func (t *teeByteReader) ReadByte() (byte, error) {
	b, err := t.r.ReadByte()
	if err == nil {
		t.h.Write([]byte{b})
	}
	return b, err
}

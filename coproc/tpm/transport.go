package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// OpenDevice opens a TPM character device, normally /dev/tpmrm0 (the
// kernel's resource manager, which flushes what a crashed client left).
func OpenDevice(path string) (transport.TPMCloser, error) {
	t, err := linuxtpm.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tpm: opening %s: %w", path, err)
	}
	return t, nil
}

// ErrTransport marks a failure to talk to the TPM (as opposed to a TPM
// response code).
var ErrTransport = errors.New("TPM transport error")

const (
	// headerSize is the size of a TPM response header: tag (2), size (4), code (4).
	headerSize = 10
	// maxResponse bounds a response (TPM responses are a few KiB at most).
	maxResponse = 1 << 16
	// DefaultIOTimeout bounds one command's round trip over TCP.
	DefaultIOTimeout = 2 * time.Minute
)

// TCP is a transport to a TPM that speaks raw TPM 2.0 commands over TCP:
// swtpm's server socket (swtpm socket --tpm2 --server type=tcp,port=P
// --flags not-need-init,startup-clear). It sends a command as one write and
// reads the 10-byte response header, then exactly the rest of the size the
// header states. There is no platform channel: swtpm's flags power the TPM on
// and send TPM2_Startup itself. swtpm serves one connection at a time (a
// second client waits until the first disconnects), and TCP does not
// reconnect: after a transport error or a swtpm restart, open a new one.
type TCP struct {
	addr    string
	timeout time.Duration

	mu   sync.Mutex // one command at a time on conn
	conn net.Conn
}

var _ transport.TPMCloser = (*TCP)(nil)

// DialSwtpm connects to a swtpm server socket at addr ("127.0.0.1:2321").
func DialSwtpm(ctx context.Context, addr string) (*TCP, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tpm: %w: connecting to swtpm at %s: %w", ErrTransport, addr, err)
	}
	return &TCP{addr: addr, timeout: DefaultIOTimeout, conn: conn}, nil
}

// Send implements transport.TPM. After an I/O error the connection is
// closed (the stream would be out of step) and later sends fail.
func (t *TCP) Send(cmd []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rsp, err := t.send(cmd)
	if err != nil && t.conn != nil {
		t.conn.Close()
		t.conn = nil
	}
	return rsp, err
}

func (t *TCP) send(cmd []byte) ([]byte, error) {
	if t.conn == nil {
		return nil, fmt.Errorf("tpm: %w: connection to %s closed", ErrTransport, t.addr)
	}
	if err := t.conn.SetDeadline(time.Now().Add(t.timeout)); err != nil {
		return nil, fmt.Errorf("tpm: %w: %w", ErrTransport, err)
	}
	if _, err := t.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm: %w: sending to %s: %w", ErrTransport, t.addr, err)
	}
	rsp := make([]byte, headerSize)
	if _, err := io.ReadFull(t.conn, rsp); err != nil {
		return nil, fmt.Errorf("tpm: %w: reading the response header from %s: %w", ErrTransport, t.addr, err)
	}
	size := binary.BigEndian.Uint32(rsp[2:6])
	if size < headerSize || size > maxResponse {
		return nil, fmt.Errorf("tpm: %w: response size %d from %s", ErrTransport, size, t.addr)
	}
	rsp = append(rsp, make([]byte, size-headerSize)...)
	if _, err := io.ReadFull(t.conn, rsp[headerSize:]); err != nil {
		return nil, fmt.Errorf("tpm: %w: reading a %d-byte response from %s: %w", ErrTransport, size, t.addr, err)
	}
	return rsp, nil
}

// Close implements transport.TPMCloser.
func (t *TCP) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}

package hostile

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// cutOffBound is how long a slow client may trickle before the test calls
// it a hang: several times the servers' ReadHeaderTimeout (10 s) and
// ReadTimeout (30 s) of cmd/vmledger. It bounds the test; the test never
// asserts how quickly the server acted within it.
const cutOffBound = 2 * time.Minute

// trickle connects to addr, writes head, then one byte of tail every
// 200 ms (repeating tail) until the server closes the connection or
// answers. It returns the status of an answer (0 if the server just
// closed), how many trickled bytes it wrote, and whether the bound ran out.
func trickle(addr, head, tail string) (status, sent int, hung bool, err error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, false, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(cutOffBound + 10*time.Second))
	done := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if head != "" {
		if _, err := conn.Write([]byte(head)); err != nil {
			return 0, 0, false, fmt.Errorf("writing the request head: %w", err)
		}
	}
	bound := time.After(cutOffBound)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case st := <-done:
			return st, sent, false, nil
		case <-bound:
			return 0, sent, true, nil
		case <-tick.C:
			if tail == "" {
				continue
			}
			if _, err := conn.Write([]byte{tail[sent%len(tail)]}); err != nil {
				// The server closed; the reader reports how.
				return <-done, sent, false, nil
			}
			sent++
		}
	}
}

// TestSlowClients: a client that sends its headers byte by byte
// (slowloris), one that connects and sends nothing, and one that trickles
// its body must each be cut off by the real binaries' http.Server timeouts
// (an answer, if any, is a 4xx), and nothing changes in the log or the
// witness.
func TestSlowClients(t *testing.T) {
	s := start(t)
	before := s.state(t)
	cases := []struct {
		name, addr, head, tail string
	}{
		{"log slowloris", s.log.Proc.Addr, "GET /checkpoint HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", "abcdefgh"},
		{"log silent connection", s.log.Proc.Addr, "", ""},
		{"log slow admission body", s.log.Proc.Addr, "POST /v1/attestations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n", string(s.fresh)},
		{"log slow enrolment body", s.log.Proc.Addr, "POST /v1/coprocessors HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + string(s.log.Token) + "\r\nContent-Length: 60000\r\n\r\n", `{"name":"x"}`},
		{"witness slowloris", s.witness.Proc.Addr, "POST /add-checkpoint HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", "abcdefgh"},
		{"witness silent connection", s.witness.Proc.Addr, "", ""},
		{"witness slow body", s.witness.Proc.Addr, "POST /add-checkpoint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 60000\r\n\r\n", "old 0\n\n"},
	}
	// All at once (goroutines, not parallel subtests, which -parallel
	// would serialise on a small machine).
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Go(func() {
			status, sent, hung, err := trickle(c.addr, c.head, c.tail)
			switch {
			case err != nil:
				t.Errorf("%s: %v", c.name, err)
			case hung:
				t.Errorf("%s: still connected after %v (%d bytes trickled), want the server to cut the client off", c.name, cutOffBound, sent)
			case status != 0 && (status < 400 || status >= 500):
				t.Errorf("%s: answered %d after %d bytes, want a 4xx or a closed connection", c.name, status, sent)
			default:
				t.Logf("%s: cut off after %d trickled bytes (answer %d; 0: closed)", c.name, sent, status)
			}
		})
	}
	wg.Wait()
	s.checkUnchanged(t, before)
}

package admission

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coproc"
)

func TestRecord(t *testing.T) {
	dv := newDevice(t, true)
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	enrol, err := NewEnrolment(dv.pub, "host-a", at)
	if err != nil {
		t.Fatal(err)
	}
	good := enrol.Marshal()
	wantPrefix := `{"_type":"https://vmledger.dev/log/enrolment/v1","action":"enrol","keyid":"` + dv.id + `","public_key":"`
	if !bytes.HasPrefix(good, []byte(wantPrefix)) || !bytes.HasSuffix(good, []byte(`","name":"host-a","time":"2026-11-28T12:00:00Z"}`)) {
		t.Errorf("enrolment record = %s", good)
	}
	revoke := NewRevocation(dv.id, at).Marshal()
	if want := `{"_type":"https://vmledger.dev/log/enrolment/v1","action":"revoke","keyid":"` + dv.id + `","time":"2026-11-28T12:00:00Z"}`; string(revoke) != want {
		t.Errorf("revocation record = %s, want %s", revoke, want)
	}
	other := newDevice(t, false)
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"enrol", good, true},
		{"revoke", revoke, true},
		{"trailing newline", append(append([]byte{}, good...), '\n'), false},
		{"spaces", bytes.Replace(good, []byte(`","`), []byte(`", "`), 1), false},
		{"other keyid", bytes.Replace(good, []byte(dv.id), []byte(other.id), 1), false},
		{"unknown action", bytes.Replace(revoke, []byte(`"revoke"`), []byte(`"suspend"`), 1), false},
		{"revoke with a name", bytes.Replace(revoke, []byte(`","time"`), []byte(`","name":"x","time"`), 1), false},
		{"unknown member", bytes.Replace(revoke, []byte(`","time"`), []byte(`","why":"x","time"`), 1), false},
		{"repeated member", bytes.Replace(revoke, []byte(`,"time"`), []byte(`,"keyid":"`+dv.id+`","time"`), 1), false},
		{"bad time", bytes.Replace(revoke, []byte(`12:00:00Z`), []byte(`12:00:00+00:00`), 1), false},
		{"envelope", []byte(`{"payloadType":"x"}`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRecord(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseRecord(%s) = %v, want ok %v", tc.in, err, tc.ok)
			}
			if err == nil && !bytes.Equal(r.Marshal(), tc.in) {
				t.Errorf("Marshal(ParseRecord(x)) = %s, want x", r.Marshal())
			}
		})
	}
	if _, err := NewEnrolment(dv.pub, "a name", at); err == nil {
		t.Error("NewEnrolment accepted a name with a space")
	}
	// A record never parses as an attestation envelope.
	if _, err := coproc.ParseEnvelope(good); err == nil || !IsRecord(good) || IsRecord([]byte(strings.TrimPrefix(string(good), "{"))) {
		t.Errorf("record/envelope confusion: %v", err)
	}
}

func FuzzParseRecord(f *testing.F) {
	dv := newDevice(f, false)
	r, _ := NewEnrolment(dv.pub, "n", time.Unix(0, 0))
	f.Add(r.Marshal())
	f.Add(NewRevocation(dv.id, time.Unix(0, 0)).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err == nil && !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("ParseRecord accepted non-canonical %q", b)
		}
	})
}

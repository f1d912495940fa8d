package vmconfig

import (
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vmledger/vmledger/agent/measure"
)

// anyImage opens every path as the same small content.
func anyImage(string) (io.ReadCloser, int64, error) {
	return io.NopCloser(strings.NewReader("image")), 5, nil
}

// checkParsed is what must hold for every configuration a parser accepts:
// it resolves and measures without error, the manifest checks, and its file
// form parses back to the same Config in JSON and in YAML.
func checkParsed(t *testing.T, c *Config) {
	t.Helper()
	mc, err := c.Resolve(t.Context(), ResolveOptions{Open: anyImage})
	if err != nil {
		t.Fatalf("accepted config does not resolve: %v", err)
	}
	m, err := measure.Measure(mc, measure.Secret{1})
	if err != nil {
		t.Fatalf("accepted config does not measure: %v", err)
	}
	if err := m.Check(); err != nil {
		t.Fatalf("measurement does not check: %v", err)
	}
	js, err := json.Marshal(c.File())
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJSON(js)
	if err != nil {
		t.Fatalf("ParseJSON(File()) = %v\n%s", err, js)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("JSON round trip changed the config:\n got %+v\nwant %+v\n%s", back, c, js)
	}
	ys, err := yaml.Marshal(c.File())
	if err != nil {
		t.Fatal(err)
	}
	back, err = ParseYAML(ys)
	if err != nil {
		t.Fatalf("ParseYAML(File()) = %v\n%s", err, ys)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("YAML round trip changed the config:\n got %+v\nwant %+v\n%s", back, c, ys)
	}
}

func addFixture(f *testing.F, name string) {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
}

func FuzzParseJSON(f *testing.F) {
	addFixture(f, "web01.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseJSON(data); err == nil {
			checkParsed(t, c)
		}
	})
}

func FuzzParseYAML(f *testing.F) {
	addFixture(f, "web01.yaml")
	addFixture(f, "web01.json") // JSON is YAML
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseYAML(data); err == nil {
			checkParsed(t, c)
		}
	})
}

func FuzzParseLibvirt(f *testing.F) {
	addFixture(f, "web01.xml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseLibvirt(data, Options{}); err == nil {
			checkParsed(t, c)
		}
	})
}

// TestRoundTripFixtures runs the fuzz property on the fixtures.
func TestRoundTripFixtures(t *testing.T) {
	for _, name := range []string{"web01.json", "web01.yaml", "web01.xml"} {
		t.Run(name, func(t *testing.T) {
			c, _, err := LoadFile("testdata/"+name, "", Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkParsed(t, c)
		})
	}
}

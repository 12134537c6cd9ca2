package policies

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRebuildIsIdentical rebuilds every module with scripts/build-policies.sh
// into a temporary tree and compares it byte for byte with the committed
// files: the committed modules must be what the sources produce.
func TestRebuildIsIdentical(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	if testing.Short() {
		t.Skip("rebuilds every policy module")
	}
	// Another Go version builds other bytes: compare only under the one
	// that built the committed modules.
	want, err := os.ReadFile("wasm/GOVERSION")
	if err != nil {
		t.Fatal(err)
	}
	have, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(have)) != strings.TrimSpace(string(want)) {
		t.Skipf("modules were built with %s, the toolchain is %s", bytes.TrimSpace(want), bytes.TrimSpace(have))
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "../scripts/build-policies.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-policies.sh: %v\n%s", err, b)
	}
	var committed []string
	for _, pat := range []string{"wasm/*.wasm", "testdata/hostile/*.wasm"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		committed = append(committed, m...)
	}
	built, err := filepath.Glob(filepath.Join(out, "policies", "*", "*.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	hostile, _ := filepath.Glob(filepath.Join(out, "policies", "testdata", "hostile", "*.wasm"))
	if len(built)+len(hostile) != len(committed) {
		t.Errorf("rebuilt %d modules, %d committed", len(built)+len(hostile), len(committed))
	}
	for _, rel := range committed {
		want, err := os.ReadFile(rel)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, "policies", rel))
		if err != nil {
			t.Errorf("%s: not rebuilt: %v", rel, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: rebuild differs from the committed module (run make policies)", rel)
		}
	}
}

func TestBuiltins(t *testing.T) {
	want := []string{"adaptive", "dapt-only", "joint-replay", "no-replay", "sequential", "sft-only"}
	got := Names()
	if len(got) != len(want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for i, n := range want {
		if got[i] != n {
			t.Fatalf("Names() = %v, want %v", got, want)
		}
		b, err := Builtin(n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x00asm")) {
			t.Errorf("%s: not a wasm module", n)
		}
	}
	if _, err := Builtin("nope"); err == nil {
		t.Error("Builtin(nope) succeeded")
	}
}

// Package policies embeds the built-in mixing policies, compiled to WASM
// (policies/wasm/<name>.wasm, built by `make policies` and committed), so
// the replayd binary needs no Go toolchain at run time. Sources:
// policies/<name>/main.go over the logic in policies/recipe and the guest
// SDK in policies/sdk; the ABI is in policies/abi and README.md.
package policies

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// Default is the name of the default policy: the paper's Joint-and-Replay
// recipe.
const Default = "joint-replay"

// modules holds the committed builds; embed needs a package variable, and
// it is read-only.
//
//go:embed wasm/*.wasm
var modules embed.FS

// Builtin returns the WASM module of the named built-in policy.
func Builtin(name string) ([]byte, error) {
	b, err := modules.ReadFile("wasm/" + name + ".wasm")
	if err != nil {
		return nil, fmt.Errorf("policies: no built-in policy %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return b, nil
}

// Names lists the built-in policies, sorted.
func Names() []string {
	ents, err := fs.ReadDir(modules, "wasm")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".wasm"); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

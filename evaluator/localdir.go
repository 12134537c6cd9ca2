package evaluator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"replayd/internal/atomicfs"
	"sort"
	"strings"
)

// LocalDir publishes checkpoints into a directory: <root>/<version>/ with the
// checkpoint files and <root>/LATEST naming the newest version. Each version
// directory appears whole (written aside, then renamed).
type LocalDir struct {
	Root string
	// Keep is how many versions are kept; 0 keeps all.
	Keep int
}

// Publish copies the checkpoint files of src into Root/version.
func (d LocalDir) Publish(version, src string) error {
	if err := ValidVersion(version); err != nil {
		return err
	}
	if err := os.MkdirAll(d.Root, 0o755); err != nil {
		return fmt.Errorf("publish dir: %w", err)
	}
	tmp, err := os.MkdirTemp(d.Root, ".tmp-"+version+"-")
	if err != nil {
		return fmt.Errorf("publish %s: %w", version, err)
	}
	defer os.RemoveAll(tmp)
	for _, name := range CheckpointFiles {
		if err := copyFileSync(filepath.Join(src, name), filepath.Join(tmp, name)); err != nil {
			return fmt.Errorf("publish %s: %w", version, err)
		}
	}
	if err := atomicfs.ReplaceDir(tmp, filepath.Join(d.Root, version)); err != nil {
		return fmt.Errorf("publish %s: %w", version, err)
	}
	if err := atomicfs.WriteFile(filepath.Join(d.Root, "LATEST"), []byte(version+"\n")); err != nil {
		return fmt.Errorf("publish %s: %w", version, err)
	}
	return d.prune(version)
}

// Versions lists the published versions in Root, oldest first.
func (d LocalDir) Versions() ([]string, error) {
	ents, err := os.ReadDir(d.Root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.Root, err)
	}
	type v struct {
		name string
		mod  int64
	}
	var vs []v
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		vs = append(vs, v{e.Name(), info.ModTime().UnixNano()})
	}
	sort.Slice(vs, func(i, j int) bool {
		if vs[i].mod != vs[j].mod {
			return vs[i].mod < vs[j].mod
		}
		return vs[i].name < vs[j].name
	})
	out := make([]string, len(vs))
	for i := range vs {
		out[i] = vs[i].name
	}
	return out, nil
}

// Latest returns the version LATEST names, or "" when none was published.
func (d LocalDir) Latest() (string, error) {
	b, err := os.ReadFile(filepath.Join(d.Root, "LATEST"))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read LATEST: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (d LocalDir) prune(current string) error {
	if d.Keep <= 0 {
		return nil
	}
	vs, err := d.Versions()
	if err != nil {
		return err
	}
	for len(vs) > d.Keep {
		if vs[0] != current {
			if err := os.RemoveAll(filepath.Join(d.Root, vs[0])); err != nil {
				return fmt.Errorf("prune %s: %w", vs[0], err)
			}
		}
		vs = vs[1:]
	}
	return nil
}

// Handler serves the published checkpoints over HTTP: GET / lists versions and
// latest as JSON, GET /<version>/<file> (or /latest/<file>) serves a file.
func (d LocalDir) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.Trim(r.URL.Path, "/")
		if p == "" {
			vs, err := d.Versions()
			latest, lerr := d.Latest()
			if err == nil {
				err = lerr
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"versions": vs, "latest": latest, "files": CheckpointFiles})
			return
		}
		version, file, ok := strings.Cut(p, "/")
		if version == "latest" {
			l, err := d.Latest()
			if err != nil || l == "" {
				http.Error(w, "no checkpoint published yet", http.StatusNotFound)
				return
			}
			version = l
		}
		if !ok || ValidVersion(version) != nil || !containsString(CheckpointFiles, file) {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, filepath.Join(d.Root, version, file))
	})
}

func copyFileSync(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

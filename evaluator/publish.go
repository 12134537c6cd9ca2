package evaluator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"replayd/internal/atomicfs"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
)

// CheckpointFiles are the files of a published checkpoint, in Hugging Face
// layout plus replayd's provenance. A published checkpoint has all of them.
var CheckpointFiles = []string{"model.safetensors", "config.json", "tokenizer.json", "generation_config.json", "replayd.json"}

// FileEntry is one file of a published checkpoint.
type FileEntry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest describes one published version. It is written to the registry only
// after every file is stored, so a version in the registry is never partial.
type Manifest struct {
	Version   string      `json:"version"`
	Published time.Time   `json:"published"`
	Files     []FileEntry `json:"files"`
}

// RegistryOptions names the NATS buckets and the retention of the registry.
type RegistryOptions struct {
	// ObjectBucket holds the checkpoint files ("replayd-checkpoints").
	ObjectBucket string
	// KVBucket holds the manifests and the latest pointer ("replayd-registry").
	KVBucket string
	// Keep is how many versions are kept; older ones are deleted. 0 keeps all.
	Keep int
	// Replicas of both buckets (1 on a single server).
	Replicas int
}

// Registry publishes checkpoints to a NATS Object Store and records them in a
// KV bucket whose key "latest" names the newest version.
type Registry struct {
	obj  jetstream.ObjectStore
	kv   jetstream.KeyValue
	keep int
}

const (
	latestKey      = "latest"
	manifestPrefix = "v."
)

// OpenRegistry creates or opens the registry's buckets.
func OpenRegistry(ctx context.Context, js jetstream.JetStream, opts RegistryOptions) (*Registry, error) {
	if opts.ObjectBucket == "" {
		opts.ObjectBucket = "replayd-checkpoints"
	}
	if opts.KVBucket == "" {
		opts.KVBucket = "replayd-registry"
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: opts.ObjectBucket, Description: "replayd published checkpoints",
		Storage: jetstream.FileStorage, Replicas: opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", opts.ObjectBucket, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: opts.KVBucket, Description: "replayd checkpoint registry",
		Storage: jetstream.FileStorage, Replicas: opts.Replicas, History: 16,
	})
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w", opts.KVBucket, err)
	}
	return &Registry{obj: obj, kv: kv, keep: opts.Keep}, nil
}

// ValidVersion reports whether v can name a version (a KV key and object prefix).
func ValidVersion(v string) error {
	if v == "" || len(v) > 128 {
		return fmt.Errorf("version %q: want 1 to 128 characters", v)
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("version %q: only letters, digits, - and _ are allowed", v)
		}
	}
	if v == latestKey {
		return fmt.Errorf("version %q is reserved", v)
	}
	return nil
}

// Publish uploads every checkpoint file of dir as version, then records its
// manifest and moves "latest" to it, then prunes old versions.
func (r *Registry) Publish(ctx context.Context, version, dir string) (Manifest, error) {
	if err := ValidVersion(version); err != nil {
		return Manifest{}, err
	}
	m := Manifest{Version: version, Published: time.Now().UTC()}
	for _, name := range CheckpointFiles {
		entry, err := r.putFile(ctx, version, filepath.Join(dir, name))
		if err != nil {
			return Manifest{}, fmt.Errorf("publish %s: %w", version, err)
		}
		m.Files = append(m.Files, entry)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return Manifest{}, fmt.Errorf("encode manifest: %w", err)
	}
	if _, err := r.kv.Put(ctx, manifestPrefix+version, raw); err != nil {
		return Manifest{}, fmt.Errorf("record manifest of %s: %w", version, err)
	}
	if _, err := r.kv.PutString(ctx, latestKey, version); err != nil {
		return Manifest{}, fmt.Errorf("point latest at %s: %w", version, err)
	}
	if err := r.prune(ctx, version); err != nil {
		return m, fmt.Errorf("published %s, but pruning failed: %w", version, err)
	}
	return m, nil
}

func (r *Registry) putFile(ctx context.Context, version, path string) (FileEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileEntry{}, err
	}
	defer f.Close()
	h := sha256.New()
	info, err := r.obj.Put(ctx, jetstream.ObjectMeta{Name: version + "/" + filepath.Base(path)}, io.TeeReader(f, h))
	if err != nil {
		return FileEntry{}, fmt.Errorf("upload %s: %w", path, err)
	}
	return FileEntry{Name: filepath.Base(path), Size: int64(info.Size), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Latest returns the version "latest" points at.
func (r *Registry) Latest(ctx context.Context) (string, error) {
	e, err := r.kv.Get(ctx, latestKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("no checkpoint published yet: %w", err)
	}
	if err != nil {
		return "", fmt.Errorf("read latest: %w", err)
	}
	return string(e.Value()), nil
}

// Manifest returns the manifest of version.
func (r *Registry) Manifest(ctx context.Context, version string) (Manifest, error) {
	e, err := r.kv.Get(ctx, manifestPrefix+version)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest of %s: %w", version, err)
	}
	var m Manifest
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return Manifest{}, fmt.Errorf("decode manifest of %s: %w", version, err)
	}
	return m, nil
}

// List returns the published versions, oldest first.
func (r *Registry) List(ctx context.Context) ([]Manifest, error) {
	keys, err := r.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list registry: %w", err)
	}
	var out []Manifest
	for k := range keys.Keys() {
		if !strings.HasPrefix(k, manifestPrefix) {
			continue
		}
		m, err := r.Manifest(ctx, strings.TrimPrefix(k, manifestPrefix))
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // pruned meanwhile
			}
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Published.Before(out[j].Published) })
	return out, nil
}

func (r *Registry) prune(ctx context.Context, current string) error {
	if r.keep <= 0 {
		return nil
	}
	all, err := r.List(ctx)
	if err != nil {
		return err
	}
	for len(all) > r.keep {
		old := all[0]
		all = all[1:]
		if old.Version == current {
			continue
		}
		// The manifest goes first, so no reader starts on a half-deleted version.
		if err := r.kv.Delete(ctx, manifestPrefix+old.Version); err != nil {
			return fmt.Errorf("delete manifest %s: %w", old.Version, err)
		}
		for _, f := range old.Files {
			if err := r.obj.Delete(ctx, old.Version+"/"+f.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				return fmt.Errorf("delete %s/%s: %w", old.Version, f.Name, err)
			}
		}
	}
	return nil
}

// Pull downloads version ("" = latest) into outDir, verifying every file's
// size and SHA-256 against the manifest before the directory appears.
func (r *Registry) Pull(ctx context.Context, version, outDir string) (Manifest, error) {
	return r.PullProgress(ctx, version, outDir, nil)
}

// PullProgress is Pull with a progress bar per file on progress (nil: none).
func (r *Registry) PullProgress(ctx context.Context, version, outDir string, progress io.Writer) (Manifest, error) {
	if version == "" {
		v, err := r.Latest(ctx)
		if err != nil {
			return Manifest{}, err
		}
		version = v
	}
	m, err := r.Manifest(ctx, version)
	if err != nil {
		return Manifest{}, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(outDir)), ".pull-"+version+"-")
	if err != nil {
		return Manifest{}, fmt.Errorf("pull %s: %w", version, err)
	}
	defer os.RemoveAll(tmp)
	for _, f := range m.Files {
		if err := r.getFile(ctx, version, f, filepath.Join(tmp, f.Name), progress); err != nil {
			return Manifest{}, fmt.Errorf("pull %s: %w", version, err)
		}
	}
	if err := atomicfs.ReplaceDir(tmp, outDir); err != nil {
		return Manifest{}, fmt.Errorf("pull %s: %w", version, err)
	}
	return m, nil
}

func (r *Registry) getFile(ctx context.Context, version string, want FileEntry, path string, progress io.Writer) error {
	res, err := r.obj.Get(ctx, version+"/"+want.Name)
	if err != nil {
		return fmt.Errorf("get %s: %w", want.Name, err)
	}
	defer res.Close()
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	h := sha256.New()
	var dst io.Writer = io.MultiWriter(out, h)
	if progress != nil {
		bar := progressbar.NewOptions64(want.Size, progressbar.OptionSetWriter(progress), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription(want.Name), progressbar.OptionThrottle(200*time.Millisecond))
		defer bar.Finish()
		dst = io.MultiWriter(dst, bar)
	}
	n, err := io.Copy(dst, res)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", want.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != want.Size || got != want.SHA256 {
		return fmt.Errorf("%s: got %d bytes sha256 %s, manifest says %d bytes sha256 %s", want.Name, n, got, want.Size, want.SHA256)
	}
	return nil
}

// Watch calls fn with every version "latest" moves to (the current one
// first, if any) until ctx ends.
func (r *Registry) Watch(ctx context.Context, fn func(version string)) error {
	w, err := r.kv.Watch(ctx, latestKey)
	if err != nil {
		return fmt.Errorf("watch latest: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch latest: watcher closed")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // nil marks the end of the initial values
			}
			fn(string(e.Value()))
		}
	}
}

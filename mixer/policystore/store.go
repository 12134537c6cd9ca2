// Package policystore keeps policy modules in NATS JetStream: the module
// bytes in an Object Store bucket, and a KV key pointing at the active
// one, whose history is the push/rollback history. The daemon watches the
// key; `replayd policy push|list|rollback` write and read it.
package policystore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Default bucket and key names.
const (
	DefaultObjectBucket = "replayd-policies"
	DefaultKVBucket     = "replayd-policy"
	ActiveKey           = "active"
	// historyDepth is how many pointer revisions the KV bucket keeps (the
	// JetStream maximum).
	historyDepth = 64
)

// Pointer is the value of the active key: which module is active.
type Pointer struct {
	// Name is the policy's name, e.g. "joint-replay".
	Name string `json:"name"`
	// SHA256 is the hex SHA-256 of the module bytes.
	SHA256 string `json:"sha256"`
	// Object is the module's name in the object store.
	Object string `json:"object"`
	// Config is the blob passed to the module's init export (may be empty).
	Config []byte `json:"config,omitempty"`
	// PushedAt is when the pointer was written.
	PushedAt time.Time `json:"pushed_at"`
	// Rollback marks a pointer written by Rollback (it pops the history
	// instead of pushing onto it).
	Rollback bool `json:"rollback,omitempty"`
	// Revision is the KV revision the pointer was read at (not stored).
	Revision uint64 `json:"-"`
}

// Store reads and writes policies in one object bucket and one KV bucket.
type Store struct {
	obj jetstream.ObjectStore
	kv  jetstream.KeyValue
}

// Open opens (creating them when missing) the object bucket and the KV
// bucket on js.
func Open(ctx context.Context, js jetstream.JetStream, objectBucket, kvBucket string) (*Store, error) {
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      objectBucket,
		Description: "replayd policy modules (WASM)",
	})
	if err != nil {
		return nil, fmt.Errorf("policystore: object bucket %s: %w", objectBucket, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      kvBucket,
		Description: "replayd active policy pointer and its history",
		History:     historyDepth,
	})
	if err != nil {
		return nil, fmt.Errorf("policystore: kv bucket %s: %w", kvBucket, err)
	}
	return &Store{obj: obj, kv: kv}, nil
}

// Push stores the module (under its hash, so pushing the same bytes twice
// stores them once) and points the active key at it.
func (s *Store) Push(ctx context.Context, name string, wasm, config []byte) (Pointer, error) {
	sum := sha256.Sum256(wasm)
	h := hex.EncodeToString(sum[:])
	p := Pointer{Name: name, SHA256: h, Object: h + ".wasm", Config: config, PushedAt: time.Now().UTC()}
	if _, err := s.obj.GetInfo(ctx, p.Object); errors.Is(err, jetstream.ErrObjectNotFound) {
		if _, err := s.obj.PutBytes(ctx, p.Object, wasm); err != nil {
			return p, fmt.Errorf("policystore: store %s: %w", p.Object, err)
		}
	} else if err != nil {
		return p, fmt.Errorf("policystore: look up %s: %w", p.Object, err)
	}
	return s.point(ctx, p)
}

func (s *Store) point(ctx context.Context, p Pointer) (Pointer, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return p, fmt.Errorf("policystore: encode pointer: %w", err)
	}
	rev, err := s.kv.Put(ctx, ActiveKey, b)
	if err != nil {
		return p, fmt.Errorf("policystore: point %s at %s: %w", ActiveKey, p.Object, err)
	}
	p.Revision = rev
	return p, nil
}

func decode(e jetstream.KeyValueEntry) (Pointer, error) {
	var p Pointer
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return p, fmt.Errorf("policystore: pointer at revision %d: %w", e.Revision(), err)
	}
	p.Revision = e.Revision()
	return p, nil
}

// ErrNoPolicy means no policy was ever pushed.
var ErrNoPolicy = errors.New("policystore: no policy pushed")

// Active returns the active pointer.
func (s *Store) Active(ctx context.Context) (Pointer, error) {
	e, err := s.kv.Get(ctx, ActiveKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Pointer{}, ErrNoPolicy
	}
	if err != nil {
		return Pointer{}, fmt.Errorf("policystore: read %s: %w", ActiveKey, err)
	}
	return decode(e)
}

// Fetch returns the module a pointer names, checking its hash.
func (s *Store) Fetch(ctx context.Context, p Pointer) ([]byte, error) {
	b, err := s.obj.GetBytes(ctx, p.Object)
	if err != nil {
		return nil, fmt.Errorf("policystore: fetch %s: %w", p.Object, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != p.SHA256 {
		return nil, fmt.Errorf("policystore: %s has sha256 %s, pointer says %s", p.Object, got, p.SHA256)
	}
	return b, nil
}

// History returns the pointer revisions, oldest first (the bucket keeps
// the last 64).
func (s *Store) History(ctx context.Context) ([]Pointer, error) {
	es, err := s.kv.History(ctx, ActiveKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("policystore: history: %w", err)
	}
	out := make([]Pointer, 0, len(es))
	for _, e := range es {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		p, err := decode(e)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// stack replays the history: a push pushes, a rollback pops. The active
// pointer is the top; Rollback goes to the one below.
func stack(h []Pointer) []Pointer {
	var st []Pointer
	for _, p := range h {
		if p.Rollback {
			if len(st) > 0 {
				st = st[:len(st)-1]
			}
			continue
		}
		st = append(st, p)
	}
	return st
}

// Rollback points the active key at the policy active before the current
// one; repeated rollbacks walk further back.
func (s *Store) Rollback(ctx context.Context) (Pointer, error) {
	h, err := s.History(ctx)
	if err != nil {
		return Pointer{}, err
	}
	st := stack(h)
	if len(st) < 2 {
		return Pointer{}, fmt.Errorf("policystore: nothing to roll back to (%d policies in the history)", len(st))
	}
	p := st[len(st)-2]
	p.Rollback = true
	p.PushedAt = time.Now().UTC()
	return s.point(ctx, p)
}

// Watch calls fn with the active pointer (if any) and then with every new
// one, until ctx ends. fn runs on the caller's goroutine; the daemon
// fetches, validates and swaps there.
func (s *Store) Watch(ctx context.Context, fn func(Pointer)) error {
	w, err := s.kv.Watch(ctx, ActiveKey)
	if err != nil {
		return fmt.Errorf("policystore: watch %s: %w", ActiveKey, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				if err := ctx.Err(); err != nil {
					return err
				}
				return errors.New("policystore: watch ended")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // nil marks the end of the initial values
			}
			p, err := decode(e)
			if err != nil {
				continue // a foreign value; the next push fixes it
			}
			fn(p)
		}
	}
}

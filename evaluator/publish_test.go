package evaluator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); s.Shutdown(); s.WaitForShutdown() })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// writeCheckpoint writes distinct contents for every checkpoint file.
func writeCheckpoint(t *testing.T, dir, tag string) map[string][]byte {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for i, name := range CheckpointFiles {
		// The weights file is large enough to span several object chunks.
		data := bytes.Repeat([]byte(fmt.Sprintf("%s-%s-%d;", tag, name, i)), 1+i*40000)
		files[name] = data
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestRegistryPublishPullPrune(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := startJetStream(t)
	reg, err := OpenRegistry(ctx, js, RegistryOptions{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Latest(ctx); err == nil {
		t.Fatal("latest exists before any publish")
	}
	root := t.TempDir()
	contents := map[string]map[string][]byte{}
	for _, v := range []string{"s000010", "s000020", "s000030"} {
		contents[v] = writeCheckpoint(t, filepath.Join(root, "src-"+v), v)
		if _, err := reg.Publish(ctx, v, filepath.Join(root, "src-"+v)); err != nil {
			t.Fatal(err)
		}
	}
	latest, err := reg.Latest(ctx)
	if err != nil || latest != "s000030" {
		t.Fatalf("latest = %q, %v", latest, err)
	}
	list, err := reg.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Version != "s000020" || list[1].Version != "s000030" {
		t.Fatalf("after pruning to 2: %+v", list)
	}
	if _, err := reg.Pull(ctx, "s000010", filepath.Join(root, "gone")); err == nil {
		t.Fatal("pruned version pulled")
	}
	out := filepath.Join(root, "pulled")
	if _, err := reg.Pull(ctx, "", out); err != nil {
		t.Fatal(err)
	}
	for name, want := range contents["s000030"] {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s differs after pull (%v)", name, err)
		}
	}
}

func TestRegistryRefusesIncompleteAndCorrupt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := startJetStream(t)
	reg, err := OpenRegistry(ctx, js, RegistryOptions{ObjectBucket: "ckpt", KVBucket: "reg"})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	src := filepath.Join(root, "src")
	writeCheckpoint(t, src, "a")
	os.Remove(filepath.Join(src, "tokenizer.json"))
	if _, err := reg.Publish(ctx, "partial", src); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Fatalf("publish without tokenizer.json: %v", err)
	}
	if _, err := reg.Latest(ctx); err == nil {
		t.Fatal("a partial checkpoint became latest")
	}
	writeCheckpoint(t, src, "a")
	if _, err := reg.Publish(ctx, "good", src); err != nil {
		t.Fatal(err)
	}
	// Replace one stored object behind the manifest's back.
	obj, err := js.ObjectStore(ctx, "ckpt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutBytes(ctx, "good/config.json", []byte(`{"tampered":true}`)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "out")
	if _, err := reg.Pull(ctx, "good", out); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("tampered pull: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a failed pull left the output directory behind")
	}
}

func TestRegistryWatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := startJetStream(t)
	reg, err := OpenRegistry(ctx, js, RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 4)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reg.Watch(wctx, func(v string) { seen <- v }) }()
	src := t.TempDir()
	writeCheckpoint(t, src, "w")
	for _, v := range []string{"one", "two"} {
		if _, err := reg.Publish(ctx, v, src); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-seen:
			if got != v {
				t.Fatalf("watch saw %q, want %q", got, v)
			}
		case <-ctx.Done():
			t.Fatal("watch saw nothing")
		}
	}
	wcancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("watch ended with %v", err)
	}
}

func TestLocalDirPublishAndServe(t *testing.T) {
	root := t.TempDir()
	d := LocalDir{Root: filepath.Join(root, "published"), Keep: 2}
	var last map[string][]byte
	for _, v := range []string{"v1", "v2", "v3"} {
		src := filepath.Join(root, "src-"+v)
		last = writeCheckpoint(t, src, v)
		if err := d.Publish(v, src); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := d.Versions()
	if err != nil || len(vs) != 2 || vs[1] != "v3" {
		t.Fatalf("versions %v %v", vs, err)
	}
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	cases := []struct {
		path   string
		status int
		body   []byte
	}{
		{"/latest/config.json", 200, last["config.json"]},
		{"/v3/replayd.json", 200, last["replayd.json"]},
		{"/v1/config.json", 404, nil},
		{"/v3/../../etc/passwd", 404, nil},
		{"/v3/secret.txt", 404, nil},
	}
	for _, c := range cases {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || (c.body != nil && !bytes.Equal(body, c.body)) {
			t.Errorf("%s: status %d (%d bytes), want %d", c.path, resp.StatusCode, len(body), c.status)
		}
	}
}

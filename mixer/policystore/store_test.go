package policystore

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestPushWatchRollback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := startJS(t)
	s, err := Open(ctx, js, DefaultObjectBucket, DefaultKVBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Active(ctx); err != ErrNoPolicy {
		t.Fatalf("Active on an empty store: %v", err)
	}
	updates := make(chan Pointer, 16)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- s.Watch(wctx, func(p Pointer) { updates <- p }) }()

	a := bytes.Repeat([]byte("module A "), 50000) // several object chunks
	b := []byte("module B")
	pa, err := s.Push(ctx, "a", a, nil)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := s.Push(ctx, "b", b, []byte(`{"dapt_keep":0.5}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(ctx, "b", b, []byte(`{"dapt_keep":0.5}`)); err != nil {
		t.Fatal(err) // same bytes again: stored once, pointed at again
	}
	for _, want := range []Pointer{pa, pb, pb} {
		got := <-updates
		if got.SHA256 != want.SHA256 || got.Name != want.Name {
			t.Fatalf("watch got %+v, want %+v", got, want)
		}
	}
	act, err := s.Active(ctx)
	if err != nil || act.Name != "b" || string(act.Config) != `{"dapt_keep":0.5}` {
		t.Fatalf("active %+v, %v", act, err)
	}
	body, err := s.Fetch(ctx, act)
	if err != nil || !bytes.Equal(body, b) {
		t.Fatalf("fetch: %q, %v", body, err)
	}
	// History b, b, a: rolling back twice walks b -> b -> a.
	for _, want := range []string{"b", "a"} {
		rb, err := s.Rollback(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rb.Name != want || !rb.Rollback {
			t.Fatalf("rollback to %+v, want %s", rb, want)
		}
		if got := <-updates; got.Name != want {
			t.Fatalf("watch got %s after rollback, want %s", got.Name, want)
		}
	}
	act, _ = s.Active(ctx)
	body, err = s.Fetch(ctx, act)
	if err != nil || !bytes.Equal(body, a) {
		t.Fatalf("fetch after rollback: %d bytes, %v", len(body), err)
	}
	if _, err := s.Rollback(ctx); err == nil {
		t.Fatal("rolled back past the first policy")
	}
	h, err := s.History(ctx)
	if err != nil || len(h) != 5 {
		t.Fatalf("history %d entries, %v", len(h), err)
	}
	stop()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Watch returned %v", err)
	}
}

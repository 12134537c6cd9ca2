package ingest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

func TestPublishFiles(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	ctx := testCtx(t, 60*time.Second)
	c := embedded(t, ctx, t.TempDir(), 0)
	defer c.Close()
	if _, _, err := EnsureStreams(ctx, c.JS, StreamOptions{}, false); err != nil {
		t.Fatal(err)
	}
	noID := `{"instruction":"Sentiment?","input":"","output":"neutral"}`
	huge := `{"id":"huge","instruction":"x","output":"` + strings.Repeat("y", 1<<20) + `"}`
	lines := []string{
		`{"id":"a","instruction":"Sentiment?","input":"Up.","output":"positive"}`, // 1
		noID,                              // 2
		``,                                // 3 blank: skipped
		`{"id":"b","instr`,                // 4 invalid_json
		huge,                              // 5 oversize (over 1 MiB)
		`{"id":"c","text":"dapt on sft"}`, // 6 missing_field
		`{"id":"a","instruction":"Sentiment?","input":"Up.","output":"positive"}`, // 7 duplicate of 1
		"{\"id\":\"d\",\"instruction\":\"q\",\"output\":\"r\"}\r",                 // 8 CRLF
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	stdin := strings.NewReader(`{"id":"e","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}` + "\n")
	opts := PublishOptions{Kind: KindSFT, Domain: "fin", MaxInFlight: 2}
	rep, err := PublishFiles(ctx, c.NC, []string{path, "-"}, stdin, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lines != 8 || rep.Published != 4 || rep.Duplicates != 1 || rep.Rejected != 3 {
		t.Errorf("report %+v, want lines 8, published 4 (a, noID, d, e), duplicate 1, rejected 3", rep)
	}
	wantRejects := []LineReject{{path, 4, ReasonInvalidJSON, ""}, {path, 5, ReasonOversize, ""}, {path, 6, ReasonMissingField, ""}}
	if len(rep.Rejects) != len(wantRejects) {
		t.Fatalf("rejects %+v", rep.Rejects)
	}
	for i, w := range wantRejects {
		g := rep.Rejects[i]
		if g.File != w.File || g.Line != w.Line || g.Reason != w.Reason || g.Detail == "" {
			t.Errorf("reject %d = %+v, want %+v", i, g, w)
		}
	}
	s, err := c.JS.Stream(ctx, DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != ContentID([]byte(noID)) || m.Subject != "replayd.ingest.sft.fin" {
		t.Errorf("message 2: id %q subject %q, want the content hash on replayd.ingest.sft.fin", got, m.Subject)
	}
	m, err = s.GetMsg(ctx, 3)
	if err != nil || strings.HasSuffix(string(m.Data), "\r") {
		t.Errorf("CRLF line stored as %q (%v)", m.Data, err)
	}

	// Publishing the same file again stores nothing new.
	rep, err = PublishFiles(ctx, c.NC, []string{path}, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Published != 0 || rep.Duplicates != 4 {
		t.Errorf("second run %+v, want 0 published, 4 duplicates", rep)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 4 {
		t.Errorf("stream holds %d messages (%v), want 4", info.State.Msgs, err)
	}
	c.Close()
	waitGoroutines(t, goroutines)
}

// TestConnectAuth connects to a server that requires a user and password:
// the right pair connects and reaches JetStream, a wrong one is refused.
func TestConnectAuth(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	ctx := testCtx(t, 30*time.Second)
	ns := externalServer(t, server.Options{Username: "replayd", Password: "s3cret"})
	tests := []struct {
		name, user, password string
		ok                   bool
	}{
		{"right password", "replayd", "s3cret", true},
		{"wrong password", "replayd", "nope", false},
		{"no credentials", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Connect(ctx, NATSOptions{URL: ns.ClientURL(), User: tc.user, Password: tc.password, ConnectTimeout: 5 * time.Second})
			if (err == nil) != tc.ok {
				t.Fatalf("Connect err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "nope") {
					t.Errorf("error leaks the password: %v", err)
				}
				return
			}
			defer c.Close()
			if _, err := c.JS.AccountInfo(ctx); err != nil {
				t.Errorf("JetStream: %v", err)
			}
		})
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	waitGoroutines(t, goroutines)
}

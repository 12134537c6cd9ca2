package ingest

import (
	"context"
	"errors"
	"fmt"
	"github.com/nats-io/nats-server/v2/server"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"replayd/tokenizer"
)

// byteEncoder is a complete, deterministic byte-level Encoder (token = byte
// value, specials above 255). The NATS tests use it so that they check the
// log's plumbing, not a vocabulary; tests with the real tokenizer live in
// tokenizer_test.go.
type byteEncoder struct{}

const (
	tokBOS = 256 + iota
	tokEOS
	tokUser
	tokAssistant
	tokSystem
	tokEnd
)

func (byteEncoder) EncodeDAPT(text string) ([]int32, []uint8) {
	toks := []int32{tokBOS}
	for _, b := range []byte(text) {
		toks = append(toks, int32(b))
	}
	toks = append(toks, tokEOS)
	mask := make([]uint8, len(toks))
	for i := range mask {
		mask[i] = 1
	}
	return toks, mask
}

func (byteEncoder) EncodeChat(turns []tokenizer.Turn) ([]int32, []uint8, error) {
	toks, mask := []int32{tokBOS}, []uint8{0}
	for _, t := range turns {
		var m uint8
		switch t.Role {
		case "user":
			toks = append(toks, tokUser)
		case "system":
			toks = append(toks, tokSystem)
		case "assistant":
			toks, m = append(toks, tokAssistant), 1
		default:
			return nil, nil, errors.New("bad role " + t.Role)
		}
		mask = append(mask, 0)
		for _, b := range []byte(t.Content) {
			toks, mask = append(toks, int32(b)), append(mask, m)
		}
		toks, mask = append(toks, tokEnd), append(mask, m)
	}
	return toks, mask, nil
}

// testCtx is a context bounded well under the package's test timeout, so a
// hang fails with a message instead of killing the binary.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// freePort returns a free TCP port on 127.0.0.1.
//
// Tests restart servers on the same port, so the port is drawn below the
// kernel's ephemeral range (32768+ on Linux): a port the kernel hands to
// another process's ":0" listener or outgoing connection between our close
// and re-listen would be taken from under the test.
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free port in 20000-32000")
	return 0
}

// embedded starts an embedded server on dataDir and connects to it.
func embedded(t *testing.T, ctx context.Context, dataDir string, port int) *Conn {
	t.Helper()
	c, err := Connect(ctx, NATSOptions{Embedded: EmbeddedOptions{
		DataDir: dataDir, Port: port, MaxMemory: 64 << 20, MaxStore: 1 << 30,
	}})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c
}

// waitGoroutines waits until the goroutine count is back to at most n
// (servers and clients end their goroutines asynchronously after Close).
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutine leak: %d > %d\n%s", runtime.NumGoroutine(), n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// externalServer starts a nats-server with JetStream on a random local port
// and the given authentication/TLS settings in opts (the rest is filled
// in), standing in for an external deployment; it stops with the test.
func externalServer(t *testing.T, opts server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, true, true
	opts.JetStream, opts.StoreDir, opts.JetStreamMaxMemory, opts.JetStreamMaxStore = true, t.TempDir(), 16<<20, 64<<20
	ns, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return ns
}

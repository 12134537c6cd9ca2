package ingest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildNATSServer compiles nats-server from the module's own dependency
// (github.com/nats-io/nats-server/v2 in go.mod), so the cluster runs the
// same server version as the embedded one, as separate processes that can
// be killed.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			t.Skip("no go command to build nats-server")
		}
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	return bin
}

type clusterNode struct {
	name    string
	url     string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// startCluster starts three JetStream nodes on loopback ports.
func startCluster(t *testing.T, bin string) []*clusterNode {
	t.Helper()
	dir := t.TempDir()
	ports := make([]int, 6)
	for i := range ports {
		ports[i] = freePort(t)
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
	}
	nodes := make([]*clusterNode, 3)
	for i := range 3 {
		n := &clusterNode{name: fmt.Sprintf("n%d", i+1), url: fmt.Sprintf("nats://127.0.0.1:%d", ports[i]), done: make(chan struct{})}
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q, max_memory_store: 64MB, max_file_store: 1GB }
cluster { name: replayd-test, listen: 127.0.0.1:%d, routes: [%s] }
`, n.name, ports[i], filepath.Join(dir, n.name), ports[3+i], strings.Join(routes, ", "))
		confPath := filepath.Join(dir, n.name+".conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		n.logPath = filepath.Join(dir, n.name+".log")
		logf, err := os.Create(n.logPath)
		if err != nil {
			t.Fatal(err)
		}
		n.cmd = exec.Command(bin, "-c", confPath)
		n.cmd.Stdout, n.cmd.Stderr = logf, logf
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			_ = n.cmd.Wait()
			logf.Close()
			close(n.done)
		}()
		nodes[i] = n
	}
	for _, n := range nodes {
		addr := strings.TrimPrefix(n.url, "nats://")
		waitFor(t, 30*time.Second, n.name+" listening", func() bool {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() {
			for _, n := range nodes {
				b, _ := os.ReadFile(n.logPath)
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- %s log tail ---\n%s", n.name, b)
			}
		}
	})
	return nodes
}

// TestClusterNodeKill publishes to an R3 stream on a three-node cluster,
// SIGKILLs the stream leader halfway, and checks that the reader sees every
// sample exactly once, by id, and that the stream stored each once.
func TestClusterNodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in -short mode")
	}
	const total, killAt = 2000, 800
	goroutines := runtime.NumGoroutine()
	ctx := testCtx(t, 100*time.Second)
	bin := buildNATSServer(t)
	start := time.Now()
	nodes := startCluster(t, bin)
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url
	}
	c, err := Connect(ctx, NATSOptions{URL: strings.Join(urls, ","), ReconnectWait: 100 * time.Millisecond, ConnectTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var l *Log
	waitFor(t, 45*time.Second, "JetStream R3 stream created", func() bool {
		var err error
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		l, err = OpenLog(actx, c, StreamOptions{Replicas: 3}, byteEncoder{})
		if err != nil {
			t.Logf("open log: %v", err)
		}
		return err == nil
	})

	t.Logf("%s: stream created", time.Since(start))
	var mu sync.Mutex
	seen := map[string]int{}
	r, err := l.Read(ctx, ReadOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	readDone := make(chan error, 1)
	go func() {
		for {
			s, err := r.Next(ctx)
			if err != nil {
				readDone <- err
				return
			}
			mu.Lock()
			seen[s.ID]++
			mu.Unlock()
		}
	}()
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}

	pr, pw := io.Pipe()
	type pubResult struct {
		rep PublishReport
		err error
	}
	pubDone := make(chan pubResult, 1)
	go func() {
		rep, err := Publish(ctx, c.NC, []PublishInput{{Name: "pipe", R: pr, Size: -1}},
			PublishOptions{Kind: KindDAPT, Domain: "fin", MaxInFlight: 64, AckTimeout: 2 * time.Second})
		pr.CloseWithError(err) // unblock the writer if Publish stopped early
		pubDone <- pubResult{rep, err}
	}()
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := fmt.Fprintf(pw, `{"id":"doc-%d","text":"cluster sample %d"}`+"\n", i, i); err != nil {
				t.Fatalf("write line %d: %v", i, err)
			}
		}
	}
	write(0, killAt)
	waitFor(t, 30*time.Second, "half the samples read", func() bool { return distinct() >= killAt/2 })
	si, err := l.stream.Info(ctx)
	if err != nil || si.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	killed := ""
	for _, n := range nodes {
		if n.name == si.Cluster.Leader {
			if err := n.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-n.done
			killed = n.name
		}
	}
	if killed == "" {
		t.Fatalf("stream leader %q is not a node", si.Cluster.Leader)
	}
	t.Logf("%s: killed stream leader %s after %d samples read", time.Since(start), killed, distinct())
	write(killAt, total)
	pw.Close()
	res := <-pubDone
	if res.err != nil {
		t.Fatalf("publish: %v (report %+v)", res.err, res.rep)
	}
	if res.rep.Published+res.rep.Duplicates != total || res.rep.Rejected != 0 {
		t.Errorf("publish report %+v, want %d stored", res.rep, total)
	}
	t.Logf("%s: published %+v", time.Since(start), res.rep)
	waitFor(t, 45*time.Second, "every sample read", func() bool { return distinct() >= total })
	t.Logf("%s: all read", time.Since(start))
	// Everything stored has been read: no duplicate can still be in flight.
	var last uint64
	waitFor(t, 30*time.Second, "stream info after failover", func() bool {
		last, err = l.LastSeq(ctx)
		return err == nil
	})
	waitFor(t, 30*time.Second, "reader at the stream's end", func() bool { return r.Position() >= last })
	r.Close()
	if err := <-readDone; err != ErrReaderClosed {
		t.Errorf("reader ended with %v", err)
	}
	mu.Lock()
	for i := range total {
		if n := seen[fmt.Sprintf("doc-%d", i)]; n != 1 {
			t.Errorf("doc-%d read %d times", i, n)
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct ids read, want %d", len(seen), total)
	}
	mu.Unlock()
	if last != total {
		t.Errorf("stream last sequence %d, want %d (one message per id)", last, total)
	}
	// A replica of the killed leader's stream answers direct gets.
	s, err := l.Get(ctx, 1)
	if err != nil || s.ID != "doc-0" {
		t.Errorf("Get(1) after failover = %q, %v", s.ID, err)
	}
	c.Close()
	// The two surviving nodes' process waiters end in the cleanup.
	waitGoroutines(t, goroutines+2)
}

package ops

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func startTestServer(t *testing.T, s *Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr, done, err := Serve(ctx, "127.0.0.1:0", s.Handler(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + addr
}

func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	method := "GET"
	if len(hdr) > 0 && hdr[0] == "POST" {
		method, hdr = "POST", hdr[1:]
	}
	req, _ := http.NewRequest(method, url, nil)
	if len(hdr) > 0 {
		req.Header.Set("Authorization", hdr[0])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	st := NewStatus("tiny")
	m := NewMetrics()
	evals := 0
	base := startTestServer(t, &Server{Status: st, Metrics: m, Token: "sekret",
		Actions: map[string]func(*http.Request) (any, error){"eval": func(*http.Request) (any, error) { evals++; return map[string]int{"queued": evals}, nil }}})

	if code, _ := get(t, base+"/readyz"); code != 503 {
		t.Fatalf("readyz before ready: %d", code)
	}
	st.SetPhase("training", true)
	for step := 1; step <= 30; step++ {
		st.RecordStep(step, int64(step*1000), 900, uint64(step*8),
			LossPoint{Step: step, Loss: 5 - float64(step)/10, Buckets: map[string]float64{"sft/domain": 4, "dapt/domain": 6 - float64(step)/10}},
			MixPoint{Step: step, Fractions: map[string]float64{"sft/domain": 0.4, "dapt/domain": 0.6}})
	}
	st.RecordEval(EvalPoint{Step: 0, Baseline: true, Scores: map[string]float64{"seen": 10, "loss/general": 5}})
	st.RecordEval(EvalPoint{Step: 20, Pass: false, Reasons: []string{"seen too low"}, Scores: map[string]float64{"seen": 11, "loss/general": 5.1}})
	st.RecordEval(EvalPoint{Step: 30, Pass: true, Published: "s000030", Scores: map[string]float64{"seen": 20, "loss/general": 4.9}})
	st.RecordPublished(Published{Version: "s000030", Step: 30, Time: time.Now()})
	m.Steps.Add(30)

	cases := []struct {
		path   string
		status int
		want   []string
	}{
		{"/healthz", 200, []string{"ok"}},
		{"/readyz", 200, []string{"ready"}},
		{"/metrics", 200, []string{"replayd_train_steps_total 30", "go_goroutines"}},
		{"/status", 200, []string{`"step":30`, `"published":"s000030"`}},
		{"/", 200, []string{"<svg", "<polyline", `class="marker fail"`, `class="marker pass"`, "s000030", "seen too low"}},
		{"/nope", 404, nil},
	}
	for _, c := range cases {
		code, body := get(t, base+c.path)
		if code != c.status {
			t.Errorf("%s: status %d, want %d", c.path, code, c.status)
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: body lacks %q", c.path, w)
			}
		}
	}
	var snap Snapshot
	_, body := get(t, base+"/status")
	if err := json.Unmarshal([]byte(body), &snap); err != nil || len(snap.Loss) != 30 {
		t.Fatalf("status JSON: %v, %d loss points", err, len(snap.Loss))
	}

	for _, c := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer sekret", 200}} {
		if code, _ := get(t, base+"/api/eval", "POST", c.auth); code != c.status {
			t.Errorf("POST /api/eval with %q: %d, want %d", c.auth, code, c.status)
		}
	}
	if evals != 1 {
		t.Fatalf("eval action ran %d times", evals)
	}
}

func TestActionsDisabledWithoutToken(t *testing.T) {
	base := startTestServer(t, &Server{Status: NewStatus("x"),
		Actions: map[string]func(*http.Request) (any, error){"eval": func(*http.Request) (any, error) { return nil, nil }}})
	if code, _ := get(t, base+"/api/eval", "POST", "Bearer "); code != 403 {
		t.Fatalf("status %d, want 403", code)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	st := NewStatus("x")
	for i := 0; i < 3*maxHistory; i++ {
		st.RecordStep(i, 0, 0, 0, LossPoint{Step: i}, MixPoint{Step: i})
	}
	s := st.Snapshot()
	if len(s.Loss) > maxHistory || s.Loss[0].Step != 0 || s.Loss[len(s.Loss)-1].Step != 3*maxHistory-1 {
		t.Fatalf("history %d points, first %d last %d", len(s.Loss), s.Loss[0].Step, s.Loss[len(s.Loss)-1].Step)
	}
}

// A pyroscope server that accepts connections but never answers must not hold
// Stop for the library's 30 s.
func TestProfilerStopIsBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // hold it open, say nothing
		}
	}()
	p, err := StartProfiler(PyroscopeConfig{Server: "http://" + ln.Addr().String(), AppName: "t", Timeout: 500 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Stop(context.Background())
	// Generous bound: the point is "not 30 s", not a timing assertion.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Stop took %v", d)
	}
	disabled, err := StartProfiler(PyroscopeConfig{}, nil)
	if err != nil || disabled.Stop(context.Background()) != nil {
		t.Fatal("disabled profiler")
	}
}

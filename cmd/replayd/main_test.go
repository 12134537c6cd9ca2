package main

import (
	"bufio"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoProcess runs `replayd demo` as a process: it must serve /metrics,
// /status and the status page while training, and on SIGTERM finish the step,
// write a checkpoint and exit 0.
func TestDemoProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "replayd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	data := filepath.Join(dir, "demo")
	cmd := exec.CommandContext(ctx, bin, "demo", "--data_dir", data, "--http.addr", "127.0.0.1:0",
		"--eval.every_steps", "15", "--train.checkpoint_every", "100000", "--log.level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Wait for the status address and the second evaluation.
	base, evals := "", 0
	for evals < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("demo exited early")
			}
			t.Log(l)
			if a, ok := strings.CutPrefix(l, "status page: "); ok {
				base = strings.TrimSuffix(a, "/")
			}
			if strings.HasPrefix(l, "eval step=") {
				evals++
			}
		case <-ctx.Done():
			t.Fatal("no evaluation within the deadline")
		}
	}
	if base == "" {
		t.Fatal("no status page address printed")
	}
	body := func(path string) string {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	for _, want := range []string{"replayd_train_steps_total", "replayd_train_loss{bucket=", "replayd_eval_score{score=", "replayd_nats_connected 1"} {
		if m := body("/metrics"); !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var st struct {
		Step  int               `json:"step"`
		Ready bool              `json:"ready"`
		Evals []json.RawMessage `json:"evals"`
	}
	if err := json.Unmarshal([]byte(body("/status")), &st); err != nil || st.Step == 0 || !st.Ready || len(st.Evals) < 3 {
		t.Fatalf("/status: %+v %v", st, err)
	}
	if page := body("/"); !strings.Contains(page, "<polyline") {
		t.Error("status page has no chart lines")
	}
	screenshot(t, base, filepath.Join(dir, "status.png"))

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(data, "checkpoint", "state.json"))
	if err != nil {
		t.Fatalf("no checkpoint after SIGTERM: %v", err)
	}
	var state struct{ Step int }
	if err := json.Unmarshal(raw, &state); err != nil || state.Step < st.Step {
		t.Fatalf("checkpoint step %d, status said %d (%v)", state.Step, st.Step, err)
	}
}

// screenshot renders the status page in headless Chromium, when installed,
// and checks that chart strokes are drawn.
func screenshot(t *testing.T, base, out string) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Log("chromium not installed: no screenshot check")
		return
	}
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir="+t.TempDir(), "--window-size=1000,1500", "--screenshot="+out, base+"/")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// The first series of every chart is drawn in #1f77b4.
	blue := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			if r>>8 < 0x40 && g>>8 > 0x60 && g>>8 < 0x90 && bb>>8 > 0x98 && bb>>8 < 0xd0 {
				blue++
			}
		}
	}
	if blue < 200 {
		t.Fatalf("status page screenshot has %d chart-blue pixels; charts did not render", blue)
	}
	if dst := os.Getenv("STATUS_SCREENSHOT"); dst != "" {
		raw, _ := os.ReadFile(out)
		os.WriteFile(dst, raw, 0o644)
	}
}

package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"replayd/ingest"
	"replayd/ops"
)

// childEnv names the config file a re-executed test binary trains with.
const childEnv = "REPLAYD_TEST_CHILD_CONFIG"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(crashChild(path))
	}
	os.Exit(m.Run())
}

// crashChild runs the daemon until the log is drained (or it is killed).
func crashChild(path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var cfg ops.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log, lv := quietLog()
	if err := Run(context.Background(), cfg, RunOptions{RecordTrained: true, StopWhenDrained: true}, log, lv); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// TestCrashResumeExactlyOnce kills the daemon with SIGKILL at random points
// ten times, then lets it finish: every fresh sample in the log is trained
// exactly once across the restarts.
func TestCrashResumeExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the daemon 11 times")
	}
	data := subsetData(t, map[string]int{"finance_sft/fpb_sentiment_train.jsonl": 400})
	ds, err := ScanData(data, "fin", "gen")
	if err != nil {
		t.Fatal(err)
	}
	base := baseCheckpoint(t, ds)
	cfg := testConfig(t, base, ds)
	cfg.Eval.Suites = nil
	cfg.Train.CheckpointEvery = 3
	cfg.Train.Threads = 1

	// Publish the log once, with the embedded server on the run's store.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := ingest.Connect(ctx, ingest.NATSOptions{Embedded: ingest.EmbeddedOptions{DataDir: filepath.Join(cfg.DataDir, "nats"), NoListen: true}})
	if err != nil {
		t.Fatal(err)
	}
	ilog, err := ingest.OpenLog(ctx, conn, ingest.StreamOptions{Domains: ingest.Domains{"fin": false, "gen": true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := publishData(ctx, conn.NC, ds, ilog.Options().Subjects(), ingest.Limits{}, nil)
	if err != nil || rep.Published != 400 {
		t.Fatalf("published %d of 400: %v", rep.Published, err)
	}
	conn.Close()
	ids := publishedIDs(t, data)

	cfgPath := filepath.Join(t.TempDir(), "config.json")
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for run := 0; ; run++ {
		cmd := exec.CommandContext(ctx, self, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+cfgPath)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if kills < 10 {
			select {
			case <-time.After(time.Duration(300+rng.IntN(2500)) * time.Millisecond):
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				kills++
				continue
			case err := <-done:
				if err != nil {
					t.Fatalf("run %d: %v", run, err)
				}
			}
		} else if err := <-done; err != nil {
			t.Fatalf("final run: %v", err)
		}
		break
	}
	st, err := loadRunState(filepath.Join(cfg.DataDir, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, id := range st.Trained {
		seen[id]++
	}
	var dup, missing []string
	for id, n := range seen {
		if n > 1 {
			dup = append(dup, id)
		}
	}
	for _, id := range ids {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	slices.Sort(dup)
	t.Logf("%d kills, %d steps, %d fresh samples trained", kills, st.Step, len(st.Trained))
	if len(dup) > 0 || len(missing) > 0 || len(seen) != len(ids) {
		t.Fatalf("trained %d distinct of %d published; duplicates %v; missing %v", len(seen), len(ids), dup, missing)
	}
}

func publishedIDs(t *testing.T, data string) []string {
	raw, err := os.ReadFile(filepath.Join(data, "finance_sft/fpb_sentiment_train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	dec := json.NewDecoder(bytes.NewReader(raw))
	for dec.More() {
		var l struct{ ID string }
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, l.ID)
	}
	return ids
}

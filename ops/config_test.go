package ops

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	c, err := Loader{}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.LR != DefaultConfig().Train.LR || c.HTTP.Addr != "127.0.0.1:8080" {
		t.Fatalf("defaults not applied: %+v", c.Train)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	file := writeFile(t, t.TempDir(), "replayd.yaml", "train:\n  lr: 0.01\n  batch_size: 4\n  seq_len: 64\nlog:\n  level: debug\n")
	cases := []struct {
		name       string
		env        []string
		flags      []string
		lr         float64
		batch, seq int
		level      string
	}{
		{"file only", nil, nil, 0.01, 4, 64, "debug"},
		{"env beats file", []string{"REPLAYD_TRAIN_LR=0.02", "REPLAYD_TRAIN_SEQ_LEN=96"}, nil, 0.02, 4, 96, "debug"},
		{"flag beats env", []string{"REPLAYD_TRAIN_LR=0.02"}, []string{"--train.lr=0.03"}, 0.03, 4, 64, "debug"},
		{"env-only key", []string{"REPLAYD_LOG_LEVEL=warn"}, nil, 0.01, 4, 64, "warn"},
		{"unset flag keeps file", nil, []string{"--train.batch_size=2"}, 0.01, 2, 64, "debug"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := configFlagSet(t, c.flags)
			cfg, err := Loader{File: file, Env: c.env, Flags: fs}.Load()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Train.LR != c.lr || cfg.Train.BatchSize != c.batch || cfg.Train.SeqLen != c.seq || cfg.Log.Level != c.level {
				t.Fatalf("got lr=%v batch=%d seq=%d level=%s", cfg.Train.LR, cfg.Train.BatchSize, cfg.Train.SeqLen, cfg.Log.Level)
			}
		})
	}
}

// --device is the shorthand of --train.device (`replayd serve --device
// cuda`); evaluation follows it unless eval.device says otherwise.
func TestDeviceShorthand(t *testing.T) {
	cases := []struct {
		name                string
		env, flags          []string
		train, eval, errSub string
	}{
		{"default", nil, nil, "cpu", "cpu", ""},
		{"shorthand", nil, []string{"--device=cuda"}, "cuda", "cuda", ""},
		{"shorthand beats env", []string{"REPLAYD_TRAIN_DEVICE=cpu"}, []string{"--device", "cuda"}, "cuda", "cuda", ""},
		{"eval pinned to the cpu", nil, []string{"--device=cuda", "--eval.device=cpu"}, "cuda", "cpu", ""},
		{"same twice", nil, []string{"--device=cuda", "--train.device=cuda"}, "cuda", "cuda", ""},
		{"disagreeing", nil, []string{"--device=cuda", "--train.device=cpu"}, "", "", "disagree"},
		{"invalid", nil, []string{"--device=tpu"}, "", "", "train.device"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := configFlagSet(t, c.flags)
			cfg, err := Loader{Env: c.env, Flags: fs}.Load()
			if c.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), c.errSub) {
					t.Fatalf("error %v, want one containing %q", err, c.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Train.Device != c.train || cfg.EvalDevice() != c.eval {
				t.Fatalf("train.device %s, evaluation on %s; want %s, %s", cfg.Train.Device, cfg.EvalDevice(), c.train, c.eval)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml string
		env        []string
		want       string
	}{
		{"unknown key", "train:\n  learning_rate: 0.1\n", nil, "train.learning_rate"},
		{"unknown section", "trainer:\n  lr: 0.1\n", nil, "trainer.lr"},
		{"bad level", "log:\n  level: loud\n", nil, "log.level"},
		{"lr out of range", "train:\n  lr: 2\n", nil, "train.lr"},
		{"bad schedule", "train:\n  schedule: linear\n", nil, "train.schedule"},
		{"bad type", "train:\n  batch_size: many\n", nil, "batch_size"},
		{"bad env value", "", []string{"REPLAYD_TRAIN_WHEN_DRY=sleep"}, "train.when_dry"},
		{"unknown env key", "", []string{"REPLAYD_TRAIN_LEARNING_RATE=1"}, "REPLAYD_TRAIN_LEARNING_RATE"},
		{"bad gate rule", "gate:\n  rules:\n    - {score: seen, kind: bigger, against: baseline, value: 1}\n", nil, "gate.rules[0]"},
		{"missing suite file", "eval:\n  suites:\n    - {name: s, group: seen, kind: task, metric: exact, file: /nonexistent.jsonl}\n", nil, "eval.suites[0]"},
		{"broken yaml", "train: [lr: 0.1\n", nil, "read config"},
		{"bad publish dtype", "publish:\n  dtype: float16\n", nil, "publish.dtype"},
		{"bad eval device", "eval:\n  device: tpu\n", nil, "eval.device"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := writeFile(t, dir, strings.ReplaceAll(c.name, " ", "_")+".yaml", c.yaml)
			_, err := Loader{File: file, Env: c.env}.Load()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

// The CUDA backend's and the build scripts' REPLAYD_ variables are not
// configuration keys, but a daemon started where they are set must start
// (scripts/gpu-check.sh exports REPLAYD_CUBLAS; eval-ing
// scripts/cuda-headers.sh exports REPLAYD_CUDA_ROOT).
func TestToolEnvironmentAccepted(t *testing.T) {
	env := []string{"REPLAYD_CUBLAS=/usr/lib/libcublas.so.13", "REPLAYD_GPU_NOCUBLAS=1", "REPLAYD_EMU_SCHEDULE=shuffle",
		"REPLAYD_EMU_THREADS=2", "REPLAYD_EMU_STATS=1", "REPLAYD_CUDA_ROOT=/var/cache/replayd-cuda/root", "REPLAYD_CUDA_CACHE=/tmp/c",
		"REPLAYD_DEBIAN_MIRROR=http://deb.debian.org/debian", "REPLAYD_TRAIN_LR=0.01"}
	cfg, err := Loader{Env: env}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Train.LR != 0.01 {
		t.Fatalf("train.lr %v: the configuration variable next to the tool ones was not applied", cfg.Train.LR)
	}
}

func TestExampleConfigCoversEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../replayd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The example must load as it is, and name every key.
	if _, err := (Loader{File: "../replayd.example.yaml"}).Load(); err != nil {
		t.Fatalf("example config: %v", err)
	}
	for key := range ConfigKeys() {
		leaf := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(string(raw), leaf+":") {
			t.Errorf("replayd.example.yaml does not mention %s", key)
		}
	}
}

func TestReloadLiveAndRestartKeys(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "replayd.yaml", "train:\n  lr: 0.001\neval:\n  every_steps: 100\n")
	l := Loader{File: file}
	cur, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	changes := make(chan Change, 4)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, l, cur, func(c Change) {
			select {
			case changes <- c:
			default: // the test rewrites until it sees what it waits for
			}
		})
	}()
	// The watcher starts asynchronously: write until a reload reports what
	// the test waits for.
	writeUntil := func(body string, ok func(Change) bool) Change {
		for {
			writeFile(t, dir, "replayd.yaml", body)
			select {
			case c := <-changes:
				if ok(c) {
					return c
				}
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				t.Fatal("no reload seen")
			}
		}
	}
	ch := writeUntil("train:\n  lr: 0.002\n  seq_len: 256\neval:\n  every_steps: 10\n", func(c Change) bool { return c.Err != nil || len(c.Live) > 0 })
	if ch.Err != nil {
		t.Fatal(ch.Err)
	}
	if strings.Join(ch.Live, ",") != "eval.every_steps,train.lr" || strings.Join(ch.NeedRestart, ",") != "train.seq_len" {
		t.Fatalf("live %v restart %v", ch.Live, ch.NeedRestart)
	}
	if ch.Config.Train.LR != 0.002 || ch.Config.Eval.EverySteps != 10 || ch.Config.Train.SeqLen != cur.Train.SeqLen {
		t.Fatalf("merged config wrong: lr=%v every=%d seq=%d", ch.Config.Train.LR, ch.Config.Eval.EverySteps, ch.Config.Train.SeqLen)
	}
	ch = writeUntil("train: [broken\n", func(c Change) bool { return c.Err != nil })
	if ch.Config.Train.LR != 0.002 {
		t.Fatalf("broken yaml changed the config: lr=%v", ch.Config.Train.LR)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// configFlagSet is a flag set with every configuration flag, parsed from args.
func configFlagSet(t *testing.T, args []string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

// Package ops holds what operators touch: configuration, metrics, health,
// profiling, logging and the status page.
package ops

import (
	"fmt"
	"net"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"replayd/evaluator"
)

// Config is replayd's whole configuration. Every key has a default
// (DefaultConfig), can be set in the YAML file, by an environment variable
// REPLAYD_<SECTION>_<KEY> and, for scalars, by a flag --section.key.
type Config struct {
	DataDir   string          `mapstructure:"data_dir"`
	Log       LogConfig       `mapstructure:"log"`
	NATS      NATSConfig      `mapstructure:"nats"`
	Ingest    IngestConfig    `mapstructure:"ingest"`
	Model     ModelConfig     `mapstructure:"model"`
	Train     TrainConfig     `mapstructure:"train"`
	Mixer     MixerConfig     `mapstructure:"mixer"`
	Eval      EvalConfig      `mapstructure:"eval"`
	Gate      GateConfig      `mapstructure:"gate"`
	Publish   PublishConfig   `mapstructure:"publish"`
	HTTP      HTTPConfig      `mapstructure:"http"`
	Pyroscope PyroscopeConfig `mapstructure:"pyroscope"`
}

// LogConfig sets up log/slog.
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// NATSConfig selects an external NATS or the embedded server.
type NATSConfig struct {
	URL       string `mapstructure:"url"`
	CredsFile string `mapstructure:"creds_file"`
	User      string `mapstructure:"user"`
	Password  string `mapstructure:"password"`
	TLSCA     string `mapstructure:"tls_ca"`
	TLSCert   string `mapstructure:"tls_cert"`
	TLSKey    string `mapstructure:"tls_key"`
	// Embedded server settings, used when URL is empty.
	Host       string `mapstructure:"host"`
	Port       int    `mapstructure:"port"`
	MaxMemMB   int64  `mapstructure:"max_memory_mb"`
	MaxStoreMB int64  `mapstructure:"max_store_mb"`
}

// IngestConfig configures the ingest stream and validation.
type IngestConfig struct {
	Stream          string        `mapstructure:"stream"`
	DLQStream       string        `mapstructure:"dlq_stream"`
	Domain          string        `mapstructure:"domain"`
	GeneralDomain   string        `mapstructure:"general_domain"`
	Replicas        int           `mapstructure:"replicas"`
	MaxBytesMB      int64         `mapstructure:"max_bytes_mb"`
	MaxAge          time.Duration `mapstructure:"max_age"`
	DuplicateWindow time.Duration `mapstructure:"duplicate_window"`
	MaxSampleBytes  int           `mapstructure:"max_sample_bytes"`
}

// ModelConfig picks the model and tokenizer to start from.
type ModelConfig struct {
	// Base is a checkpoint directory (ours or Hugging Face LLaMA); empty
	// starts from scratch with Preset.
	Base      string `mapstructure:"base"`
	Preset    string `mapstructure:"preset"`
	Tokenizer string `mapstructure:"tokenizer"`
}

// TrainConfig configures the optimiser and the training loop.
type TrainConfig struct {
	SeqLen      int     `mapstructure:"seq_len"`
	BatchSize   int     `mapstructure:"batch_size"`
	GradAccum   int     `mapstructure:"grad_accum"`
	LR          float64 `mapstructure:"lr"`
	MinLR       float64 `mapstructure:"min_lr"`
	WarmupSteps int     `mapstructure:"warmup_steps"`
	Schedule    string  `mapstructure:"schedule"`
	WeightDecay float64 `mapstructure:"weight_decay"`
	GradClip    float64 `mapstructure:"grad_clip"`
	Seed        uint64  `mapstructure:"seed"`
	Threads     int     `mapstructure:"threads"`
	// Device is "cpu" or "cuda" (the cuda binary only); Precision is the
	// GEMM precision on cuda: fp32, tf32 or bf16.
	Device          string `mapstructure:"device"`
	Precision       string `mapstructure:"precision"`
	CheckpointEvery int    `mapstructure:"checkpoint_every"`
	MaxSteps        int    `mapstructure:"max_steps"`
	// WhenDry is "replay" (keep training on replay) or "idle".
	WhenDry string `mapstructure:"when_dry"`
}

// MixerConfig configures the mixing policy host.
type MixerConfig struct {
	Policy        string        `mapstructure:"policy"`
	PolicyTimeout time.Duration `mapstructure:"policy_timeout"`
	MemoryMB      int           `mapstructure:"memory_mb"`
}

// EvalConfig configures evaluation.
type EvalConfig struct {
	EverySteps   int     `mapstructure:"every_steps"`
	EveryMinutes float64 `mapstructure:"every_minutes"`
	Threads      int     `mapstructure:"threads"`
	// Device evaluates on "cpu" (a copy of the weights, Threads cores) or
	// "cuda" (a second backend on the GPU, float32); empty follows
	// train.device.
	Device string                  `mapstructure:"device"`
	Suites []evaluator.SuiteConfig `mapstructure:"suites"`
}

// GateConfig holds the publishing gate's rules.
type GateConfig struct {
	Rules []evaluator.Rule `mapstructure:"rules"`
}

// PublishConfig configures where passing checkpoints go.
type PublishConfig struct {
	Dir  string `mapstructure:"dir"`
	Keep int    `mapstructure:"keep"`
	// DType of the published model.safetensors: "float32" (the weights as
	// trained and evaluated) or "bfloat16" (half the size; the gate's scores
	// are those of the float32 snapshot).
	DType        string `mapstructure:"dtype"`
	ObjectBucket string `mapstructure:"object_bucket"`
	KVBucket     string `mapstructure:"kv_bucket"`
}

// HTTPConfig configures the metrics, health and status server.
type HTTPConfig struct {
	Addr string `mapstructure:"addr"`
	// Token guards endpoints that change state; empty disables them.
	Token string `mapstructure:"token"`
}

// PyroscopeConfig enables continuous profiling when Server is set.
type PyroscopeConfig struct {
	Server  string        `mapstructure:"server"`
	AppName string        `mapstructure:"app_name"`
	Timeout time.Duration `mapstructure:"timeout"`
}

// DefaultConfig returns the configuration used when nothing is set.
func DefaultConfig() Config {
	return Config{
		DataDir: "replayd-data",
		Log:     LogConfig{Level: "info", Format: "text"},
		NATS:    NATSConfig{Host: "127.0.0.1", Port: -1, MaxMemMB: 256, MaxStoreMB: 4096},
		Ingest: IngestConfig{
			Stream: "REPLAYD_INGEST", DLQStream: "REPLAYD_DLQ", Domain: "fin", GeneralDomain: "gen",
			Replicas: 1, MaxBytesMB: 2048, MaxAge: 0, DuplicateWindow: 2 * time.Minute, MaxSampleBytes: 1 << 20,
		},
		Model: ModelConfig{Preset: "tiny"},
		Train: TrainConfig{
			SeqLen: 128, BatchSize: 8, GradAccum: 1, LR: 1e-3, MinLR: 1e-4, WarmupSteps: 20,
			Schedule: "constant", WeightDecay: 0.1, GradClip: 1.0, Seed: 1, Threads: 0, Device: "cpu", Precision: "bf16",
			CheckpointEvery: 50, MaxSteps: 0, WhenDry: "replay",
		},
		Mixer:     MixerConfig{Policy: "joint-replay", PolicyTimeout: 200 * time.Millisecond, MemoryMB: 64},
		Eval:      EvalConfig{EverySteps: 100, EveryMinutes: 0, Threads: 1},
		Publish:   PublishConfig{Dir: "", Keep: 5, DType: "float32", ObjectBucket: "replayd-checkpoints", KVBucket: "replayd-registry"},
		HTTP:      HTTPConfig{Addr: "127.0.0.1:8080"},
		Pyroscope: PyroscopeConfig{AppName: "replayd", Timeout: 5 * time.Second},
	}
}

// IsLiveKey reports whether key may change while training (a reload applies
// it); a change to any other key needs a restart.
func IsLiveKey(key string) bool {
	switch key {
	case "eval.every_steps", "eval.every_minutes", "gate.rules", "train.lr", "train.min_lr", "log.level":
		return true
	}
	return false
}

// Validate refuses values outside what each key allows, naming the key.
func (c Config) Validate() error {
	var errs []string
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q (want text or json)", c.Log.Format)
	}
	if c.NATS.URL == "" {
		if c.NATS.Port < -1 || c.NATS.Port > 65535 {
			bad("nats.port", "%d (want -1 for a random port, or 0–65535)", c.NATS.Port)
		}
		if c.NATS.MaxMemMB < 16 {
			bad("nats.max_memory_mb", "%d (want ≥ 16)", c.NATS.MaxMemMB)
		}
		if c.NATS.MaxStoreMB < 64 {
			bad("nats.max_store_mb", "%d (want ≥ 64)", c.NATS.MaxStoreMB)
		}
	}
	if (c.NATS.TLSCert == "") != (c.NATS.TLSKey == "") {
		bad("nats.tls_cert", "tls_cert and tls_key go together")
	}
	if c.Ingest.Stream == "" || strings.ContainsAny(c.Ingest.Stream, ". *>") {
		bad("ingest.stream", "%q (want a stream name without '.', '*', '>' or spaces)", c.Ingest.Stream)
	}
	if c.Ingest.DLQStream == "" || c.Ingest.DLQStream == c.Ingest.Stream || strings.ContainsAny(c.Ingest.DLQStream, ". *>") {
		bad("ingest.dlq_stream", "%q (want a stream name unlike ingest.stream)", c.Ingest.DLQStream)
	}
	for key, d := range map[string]string{"ingest.domain": c.Ingest.Domain, "ingest.general_domain": c.Ingest.GeneralDomain} {
		if d == "" || strings.ContainsAny(d, ". *>") {
			bad(key, "%q (want a subject token without '.', '*', '>' or spaces)", d)
		}
	}
	if c.Ingest.Domain == c.Ingest.GeneralDomain {
		bad("ingest.general_domain", "must differ from ingest.domain")
	}
	if c.Ingest.Replicas < 1 || c.Ingest.Replicas > 5 {
		bad("ingest.replicas", "%d (want 1–5)", c.Ingest.Replicas)
	}
	if c.Ingest.MaxSampleBytes < 64 || c.Ingest.MaxSampleBytes > 64<<20 {
		bad("ingest.max_sample_bytes", "%d (want 64 to 64 MiB)", c.Ingest.MaxSampleBytes)
	}
	if c.Ingest.DuplicateWindow < 0 || c.Ingest.MaxAge < 0 {
		bad("ingest.duplicate_window", "durations must be ≥ 0")
	}
	if c.Model.Base == "" && c.Model.Preset == "" {
		bad("model.preset", "set model.base or model.preset")
	}
	t := c.Train
	if t.SeqLen < 8 || t.SeqLen > 1<<16 {
		bad("train.seq_len", "%d (want 8–65536)", t.SeqLen)
	}
	if t.BatchSize < 1 {
		bad("train.batch_size", "%d (want ≥ 1)", t.BatchSize)
	}
	if t.GradAccum < 1 {
		bad("train.grad_accum", "%d (want ≥ 1)", t.GradAccum)
	}
	if !(t.LR > 0 && t.LR < 1) {
		bad("train.lr", "%g (want 0 < lr < 1)", t.LR)
	}
	if !(t.MinLR >= 0 && t.MinLR <= t.LR) {
		bad("train.min_lr", "%g (want 0 ≤ min_lr ≤ lr)", t.MinLR)
	}
	if t.WarmupSteps < 0 {
		bad("train.warmup_steps", "%d (want ≥ 0)", t.WarmupSteps)
	}
	switch t.Schedule {
	case "constant", "cosine", "wsd":
	default:
		bad("train.schedule", "%q (want constant, cosine or wsd)", t.Schedule)
	}
	if t.WeightDecay < 0 || t.WeightDecay > 1 {
		bad("train.weight_decay", "%g (want 0–1)", t.WeightDecay)
	}
	if t.GradClip < 0 {
		bad("train.grad_clip", "%g (want ≥ 0; 0 disables)", t.GradClip)
	}
	if t.Threads < 0 {
		bad("train.threads", "%d (want ≥ 0; 0 uses every core)", t.Threads)
	}
	if t.Device != "cpu" && t.Device != "cuda" {
		bad("train.device", "%q (want cpu or cuda)", t.Device)
	}
	switch t.Precision {
	case "fp32", "tf32", "bf16":
	default:
		bad("train.precision", "%q (want fp32, tf32 or bf16)", t.Precision)
	}
	if t.CheckpointEvery < 1 {
		bad("train.checkpoint_every", "%d (want ≥ 1)", t.CheckpointEvery)
	}
	if t.MaxSteps < 0 {
		bad("train.max_steps", "%d (want ≥ 0; 0 runs forever)", t.MaxSteps)
	}
	if t.WhenDry != "replay" && t.WhenDry != "idle" {
		bad("train.when_dry", "%q (want replay or idle)", t.WhenDry)
	}
	if c.Mixer.Policy == "" {
		bad("mixer.policy", "must name a built-in policy or a .wasm file")
	}
	if c.Mixer.PolicyTimeout < time.Millisecond {
		bad("mixer.policy_timeout", "%v (want ≥ 1ms)", c.Mixer.PolicyTimeout)
	}
	if c.Mixer.MemoryMB < 1 || c.Mixer.MemoryMB > 4096 {
		bad("mixer.memory_mb", "%d (want 1–4096)", c.Mixer.MemoryMB)
	}
	if c.Eval.EverySteps < 0 || c.Eval.EveryMinutes < 0 {
		bad("eval.every_steps", "cadence must be ≥ 0 (0 disables that trigger)")
	}
	if c.Eval.Threads < 1 {
		bad("eval.threads", "%d (want ≥ 1)", c.Eval.Threads)
	}
	if c.Eval.Device != "" && c.Eval.Device != "cpu" && c.Eval.Device != "cuda" {
		bad("eval.device", "%q (want cpu, cuda, or empty to follow train.device)", c.Eval.Device)
	}
	names := map[string]bool{}
	for i, s := range c.Eval.Suites {
		if err := s.Validate(); err != nil {
			bad(fmt.Sprintf("eval.suites[%d]", i), "%v", err)
		}
		if names[s.Name] {
			bad(fmt.Sprintf("eval.suites[%d].name", i), "%q is used twice", s.Name)
		}
		names[s.Name] = true
	}
	for i, r := range c.Gate.Rules {
		if err := r.Validate(); err != nil {
			bad(fmt.Sprintf("gate.rules[%d]", i), "%v", err)
		}
	}
	if c.Publish.Keep < 0 {
		bad("publish.keep", "%d (want ≥ 0; 0 keeps all)", c.Publish.Keep)
	}
	if c.Publish.DType != "float32" && c.Publish.DType != "bfloat16" {
		bad("publish.dtype", "%q (want float32 or bfloat16)", c.Publish.DType)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil && c.HTTP.Addr != "" {
		bad("http.addr", "%q: %v", c.HTTP.Addr, err)
	}
	if c.Pyroscope.Server != "" && c.Pyroscope.Timeout <= 0 {
		bad("pyroscope.timeout", "%v (want > 0)", c.Pyroscope.Timeout)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// Loader reads the configuration with viper: defaults < file < environment <
// flags.
type Loader struct {
	// File is the YAML file; empty reads none.
	File string
	// Env is the environment as KEY=VALUE pairs (os.Environ()).
	Env []string
	// Flags are parsed flags made by AddFlags; nil uses none.
	Flags *pflag.FlagSet
}

// ConfigKeys lists every key of Config in dotted form, with its default.
func ConfigKeys() map[string]any {
	out := map[string]any{}
	walkKeys(reflect.ValueOf(DefaultConfig()), "", out)
	return out
}

func walkKeys(v reflect.Value, prefix string, out map[string]any) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("mapstructure")
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			walkKeys(v.Field(i), key, out)
			continue
		}
		out[key] = v.Field(i).Interface()
	}
}

// AddFlags defines a flag --<key> for every scalar key on fs.
func AddFlags(fs *pflag.FlagSet) {
	keys := ConfigKeys()
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		switch d := keys[k].(type) {
		case string:
			fs.String(k, d, "")
		case int:
			fs.Int(k, d, "")
		case int64:
			fs.Int64(k, d, "")
		case uint64:
			fs.Uint64(k, d, "")
		case float64:
			fs.Float64(k, d, "")
		case time.Duration:
			fs.Duration(k, d, "")
		}
	}
	fs.String(deviceFlag, "", "shorthand for --train.device: cpu, or cuda in the cuda binary")
}

// deviceFlag is the --device shorthand of --train.device.
const deviceFlag = "device"

// Load reads, checks and validates the configuration.
func (l Loader) Load() (Config, error) {
	v := viper.New()
	keys := ConfigKeys()
	for k, d := range keys {
		v.SetDefault(k, d)
	}
	if l.File != "" {
		v.SetConfigFile(l.File)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("read config %s: %w", l.File, err)
		}
		if err := checkUnknownKeys(v.AllKeys(), keys); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", l.File, err)
		}
	}
	// Environment: viper's AutomaticEnv is invisible to Unmarshal unless each
	// key is bound, so every key is looked up explicitly.
	env := map[string]string{}
	for _, kv := range l.Env {
		if k, val, ok := strings.Cut(kv, "="); ok {
			env[k] = val
		}
	}
	for k := range keys {
		name := EnvName(k)
		if val, ok := env[name]; ok {
			v.Set(k, val)
		}
	}
	for name := range env {
		if strings.HasPrefix(name, "REPLAYD_") && !knownEnv(name, keys) && !toolEnv(name) {
			return Config{}, fmt.Errorf("environment variable %s matches no configuration key", name)
		}
	}
	// Flags last: viper's Set outranks everything, so the order of these
	// calls is the precedence.
	if l.Flags != nil {
		var device string
		l.Flags.Visit(func(f *pflag.Flag) {
			if _, ok := keys[f.Name]; ok {
				v.Set(f.Name, f.Value.String())
			}
			if f.Name == deviceFlag {
				device = f.Value.String()
			}
		})
		if device != "" {
			if f := l.Flags.Lookup("train.device"); f != nil && f.Changed && f.Value.String() != device {
				return Config{}, fmt.Errorf("--device %s and --train.device %s disagree", device, f.Value.String())
			}
			v.Set("train.device", device)
		}
	}
	var c Config
	err := v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.WeaklyTypedInput = true
	})
	if err != nil {
		return Config{}, fmt.Errorf("decode config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// EnvName is the environment variable of a key: REPLAYD_TRAIN_LR for train.lr.
func EnvName(key string) string {
	return "REPLAYD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// toolEnv reports whether name is one of the REPLAYD_ variables that are
// not configuration keys: the CUDA backend's (which cuBLAS to load, the
// CPU emulator's settings) and the build scripts' (where the CUDA headers
// are cached). A daemon started from a shell that set them must not refuse
// to start.
func toolEnv(name string) bool {
	switch name {
	case "REPLAYD_CUBLAS", "REPLAYD_GPU_NOCUBLAS", "REPLAYD_EMU_SCHEDULE", "REPLAYD_EMU_THREADS", "REPLAYD_EMU_STATS",
		"REPLAYD_CUDA_ROOT", "REPLAYD_CUDA_CACHE", "REPLAYD_DEBIAN_MIRROR":
		return true
	}
	return false
}

func knownEnv(name string, keys map[string]any) bool {
	for k := range keys {
		if EnvName(k) == name {
			return true
		}
	}
	return false
}

func checkUnknownKeys(found []string, keys map[string]any) error {
	var unknown []string
	for _, k := range found {
		if _, ok := keys[k]; ok {
			continue
		}
		unknown = append(unknown, k)
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	known := make([]string, 0, len(keys))
	for k := range keys {
		known = append(known, k)
	}
	sort.Strings(known)
	return fmt.Errorf("unknown key(s) %s; known keys: %s", strings.Join(unknown, ", "), strings.Join(known, ", "))
}

// EvalDevice is where evaluation runs: eval.device, else train.device.
func (c Config) EvalDevice() string {
	if c.Eval.Device != "" {
		return c.Eval.Device
	}
	return c.Train.Device
}

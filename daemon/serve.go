package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"replayd/evaluator"
	"replayd/gpu"
	"replayd/ingest"
	"replayd/internal/atomicfs"
	"replayd/mixer"
	"replayd/mixer/policystore"
	"replayd/model"
	"replayd/ops"
	"replayd/policies"
	"replayd/tokenizer"
)

// RunOptions are what callers of Run set beyond the configuration.
type RunOptions struct {
	// Tokenizer is used when neither the config nor a checkpoint names one.
	Tokenizer *tokenizer.Tokenizer
	// RecordTrained keeps the ids of trained fresh samples in the run state
	// (for exactly-once tests; it grows with the log).
	RecordTrained bool
	// Out receives one line per evaluation and the status address.
	Out io.Writer
	// Ready, when set, is called once the daemon serves and trains, with the
	// HTTP address and the NATS client URL.
	Ready func(httpAddr, natsURL string)
	// OnEval is called after every evaluation (baseline included).
	OnEval func(ops.EvalPoint)
	// OnPublish is called with each published version and the snapshot it
	// was written from.
	OnPublish func(version string, m *model.Model)
	// OnStep is called on the training goroutine after each optimiser step
	// with the batch it trained on (benchmarks).
	OnStep func(step int, b *mixer.Batch)
	// StopWhenDrained ends Run once every sample in the log has been read
	// and trained (batch jobs and tests); a daemon runs on replay instead.
	StopWhenDrained bool
	// Loader, when it names a file, is watched for live configuration changes.
	Loader ops.Loader
	// SeedData, when set, runs after the streams exist and before training:
	// the demo publishes its data there.
	SeedData func(ctx context.Context, c *ingest.Conn, subjects ingest.Subjects) error
}

// Daemon is one running replayd: the stream, the mixer, the trainer, the
// evaluator and the publisher.
type Daemon struct {
	cfg     ops.Config
	opts    RunOptions
	log     *slog.Logger
	level   *slog.LevelVar
	metrics *ops.Metrics
	status  *ops.Status

	conn  *ingest.Conn
	ilog  *ingest.Log
	tok   *tokenizer.Tokenizer
	tmpl  *tokenizer.ChatTemplate
	model *model.Model
	tr    *model.Trainer
	host  *mixer.Host
	mix   *mixer.Mixer

	backend model.Backend
	// evalBackend is the GPU backend evaluations run on (eval device
	// cuda), nil for CPU copies; evalModel is the model kept on it.
	evalBackend model.Backend
	evalModel   *model.Model
	policies    *policystore.Store

	registry *evaluator.Registry
	local    evaluator.LocalDir

	ckptDir string

	// mu guards the run state and the live configuration.
	mu       sync.Mutex
	state    RunState
	live     ops.Config
	lastCkpt int
	// batchTaken wakes the ingest pump when training took a batch.
	batchTaken chan struct{}
	// ckptPending receives the result of the checkpoint being written;
	// only the training goroutine touches it.
	ckptPending chan error
	// Evaluation: the training goroutine snapshots the model between steps
	// and hands it to the evaluation goroutine through evalJobs.
	evalJobs   chan evalJob
	evalWanted atomic.Bool
	evalBusy   atomic.Bool
	lastEvalAt time.Time
	lastEvalSt int
}

// Run starts the daemon and trains until ctx ends, then finishes the current
// step, writes a checkpoint and closes everything.
func Run(ctx context.Context, cfg ops.Config, opts RunOptions, log *slog.Logger, level *slog.LevelVar) (err error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	d := &Daemon{cfg: cfg, live: cfg, opts: opts, log: log, level: level, metrics: ops.NewMetrics(),
		ckptDir: filepath.Join(cfg.DataDir, "checkpoint"), evalJobs: make(chan evalJob, 1), batchTaken: make(chan struct{}, 1)}
	d.local = evaluator.LocalDir{Root: cfg.Publish.Dir, Keep: cfg.Publish.Keep}
	if d.local.Root == "" {
		d.local.Root = filepath.Join(cfg.DataDir, "published")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// The background goroutines (HTTP, reader pump, evaluation) all stop
	// with runCtx; wg waits for them before the connections close.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		if cerr := d.close(); err == nil {
			err = cerr
		}
	}()
	if err := d.open(runCtx); err != nil {
		return err
	}
	d.status = ops.NewStatus(fmt.Sprintf("%d layers × %d hidden, %.1fM params", d.model.Config.NumHiddenLayers, d.model.Config.HiddenSize, float64(d.model.NumParams())/1e6))
	srv := &ops.Server{Status: d.status, Metrics: d.metrics, Checkpoints: d.local.Handler(), Token: cfg.HTTP.Token, Log: log,
		Actions: map[string]func(*http.Request) (any, error){
			"eval":   func(r *http.Request) (any, error) { return d.requestEval(r.Context()) },
			"policy": d.pushPolicy,
		}}
	httpAddr := ""
	if cfg.HTTP.Addr != "" {
		addr, done, err := ops.Serve(runCtx, cfg.HTTP.Addr, srv.Handler(), 5*time.Second)
		if err != nil {
			return err
		}
		httpAddr = addr
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := <-done; err != nil {
				log.Warn("http server", "err", err)
			}
		}()
		fmt.Fprintf(opts.Out, "status page: http://%s/\n", addr)
	}
	d.recordPolicy(d.mix.Policy(), d.state.Step)
	if opts.SeedData != nil {
		if err := opts.SeedData(ctx, d.conn, d.ilog.Options().Subjects()); err != nil {
			return fmt.Errorf("seed data: %w", err)
		}
	}
	reader, err := d.ilog.Read(runCtx, ingest.ReadOptions{
		// The mixer keeps its own replay pools; the log's index would be a
		// second, never-read copy growing with every sample.
		StartSeq: d.mix.NextFreshSeq(), Logger: log, NoIndex: true,
		OnReject: func(r ingest.Rejection) {
			d.metrics.DeadLetters.WithLabelValues(string(r.Reason)).Inc()
			log.Warn("sample rejected", "seq", r.Seq, "subject", r.Subject, "reason", r.Reason, "detail", r.Detail)
		},
	})
	if err != nil {
		return fmt.Errorf("start reader: %w", err)
	}
	defer func() { cancel(); reader.Close() }()
	wg.Add(1)
	go func() { defer wg.Done(); d.pump(runCtx, reader) }()
	d.watchPolicies(runCtx, &wg)

	wg.Add(1)
	go func() { defer wg.Done(); d.watchConfig(runCtx, opts.Loader) }()
	if err := d.baseline(ctx); err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); d.evalLoop(runCtx) }()
	d.status.SetPhase("training", true)
	d.metrics.NATSConnected.Set(1)
	if opts.Ready != nil {
		opts.Ready(httpAddr, d.conn.ClientURL())
	}
	log.Info("training", "step", d.state.Step, "next_fresh_seq", d.mix.NextFreshSeq(), "policy", d.mix.Policy().Name())
	trainErr := d.trainLoop(ctx)
	if trainErr == nil && ctx.Err() == nil {
		// Training ended on its own: let a running evaluation finish.
		for d.evalBusy.Load() || len(d.evalJobs) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	d.status.SetPhase("stopping", false)
	if cerr := d.checkpoint(true); cerr != nil && trainErr == nil {
		trainErr = cerr
	}
	return trainErr
}

// open connects to NATS and loads the tokenizer, the model and the mixer,
// from the last training checkpoint when there is one.
func (d *Daemon) open(ctx context.Context) error {
	cfg := d.cfg
	port := cfg.NATS.Port
	if port < 0 {
		port = 0
	}
	conn, err := ingest.Connect(ctx, ingest.NATSOptions{
		URL: cfg.NATS.URL, CredsFile: cfg.NATS.CredsFile, User: cfg.NATS.User, Password: cfg.NATS.Password,
		TLSCA: cfg.NATS.TLSCA, TLSCert: cfg.NATS.TLSCert, TLSKey: cfg.NATS.TLSKey, Logger: d.log,
		Embedded: ingest.EmbeddedOptions{DataDir: filepath.Join(cfg.DataDir, "nats"), Host: cfg.NATS.Host, Port: port,
			MaxMemory: cfg.NATS.MaxMemMB << 20, MaxStore: cfg.NATS.MaxStoreMB << 20},
	})
	if err != nil {
		return err
	}
	d.conn = conn

	resume, err := findCheckpoint(d.ckptDir)
	if err != nil {
		return err
	}
	threads := cfg.Train.Threads
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	be, err := newBackend(cfg.Train, threads)
	if err != nil {
		return err
	}
	d.backend = be
	if cfg.EvalDevice() == "cuda" {
		// Float32 GEMMs: scores comparable with a CPU evaluation's.
		eb, err := gpu.New(gpu.Options{Precision: gpu.FP32})
		if err != nil {
			return fmt.Errorf("eval.device cuda: %w", err)
		}
		d.evalBackend = eb
	}
	switch {
	case resume != "":
		d.log.Info("resuming", "checkpoint", resume)
		if d.tok, err = tokenizer.Load(filepath.Join(resume, "tokenizer.json")); err != nil {
			return err
		}
		if d.model, err = model.Load(resume, be); err != nil {
			return err
		}
		if d.state, err = loadRunState(resume); err != nil {
			return err
		}
	case cfg.Model.Base != "":
		tokPath := cfg.Model.Tokenizer
		if tokPath == "" {
			tokPath = filepath.Join(cfg.Model.Base, "tokenizer.json")
		}
		if d.tok, err = tokenizer.Load(tokPath); err != nil {
			return err
		}
		if d.model, err = model.Load(cfg.Model.Base, be); err != nil {
			return err
		}
	default:
		d.tok = d.opts.Tokenizer
		if cfg.Model.Tokenizer != "" {
			if d.tok, err = tokenizer.Load(cfg.Model.Tokenizer); err != nil {
				return err
			}
		}
		if d.tok == nil {
			return errors.New("no tokenizer: set model.tokenizer or model.base")
		}
		mc, err := scratchConfig(cfg, d.tok)
		if err != nil {
			return err
		}
		if d.model, err = model.New(mc, be, cfg.Train.Seed); err != nil {
			return err
		}
	}
	if d.tok.VocabSize() > d.model.Config.VocabSize {
		return fmt.Errorf("tokenizer has %d ids but the model only %d", d.tok.VocabSize(), d.model.Config.VocabSize)
	}
	if cfg.Train.SeqLen > d.model.Config.MaxPositionEmbeddings {
		return fmt.Errorf("train.seq_len %d exceeds the model's %d positions", cfg.Train.SeqLen, d.model.Config.MaxPositionEmbeddings)
	}
	if d.tmpl, err = d.tok.ChatTemplate(); err != nil {
		return err
	}
	if d.tr, err = model.NewTrainer(d.model, TrainOptions(cfg)); err != nil {
		return err
	}
	if resume != "" {
		if err := d.tr.LoadTrainingState(filepath.Join(resume, trainingStateFile)); err != nil {
			return err
		}
	}

	so := ingest.StreamOptions{
		Name: cfg.Ingest.Stream, DLQName: cfg.Ingest.DLQStream,
		Domains:  ingest.Domains{cfg.Ingest.Domain: false, cfg.Ingest.GeneralDomain: true},
		Replicas: cfg.Ingest.Replicas, MaxBytes: cfg.Ingest.MaxBytesMB << 20, MaxAge: cfg.Ingest.MaxAge,
		Duplicates: cfg.Ingest.DuplicateWindow,
		Limits:     ingest.Limits{MaxBytes: cfg.Ingest.MaxSampleBytes},
	}
	if d.ilog, err = ingest.OpenLog(ctx, conn, so, d.tmpl); err != nil {
		return err
	}
	if d.registry, err = evaluator.OpenRegistry(ctx, conn.JS, evaluator.RegistryOptions{
		ObjectBucket: cfg.Publish.ObjectBucket, KVBucket: cfg.Publish.KVBucket, Keep: cfg.Publish.Keep, Replicas: cfg.Ingest.Replicas,
	}); err != nil {
		return err
	}

	if d.policies, err = policystore.Open(ctx, conn.JS, policystore.DefaultObjectBucket, policystore.DefaultKVBucket); err != nil {
		return err
	}
	if d.host, err = mixer.NewHost(ctx, mixer.HostConfig{
		MemoryLimitPages: uint32(cfg.Mixer.MemoryMB * 16), CallTimeout: cfg.Mixer.PolicyTimeout, Seed: cfg.Train.Seed,
	}); err != nil {
		return err
	}
	wasm, name, err := policyModule(cfg.Mixer.Policy)
	if err != nil {
		return err
	}
	pol, err := d.host.Load(ctx, name, wasm, mixer.LoadOptions{})
	if err != nil {
		return fmt.Errorf("policy %s: %w", name, err)
	}
	d.mix, err = mixer.New(mixer.Config{B: cfg.Train.BatchSize, T: cfg.Train.SeqLen, Seed: cfg.Train.Seed,
		OnPolicyError: func(name, hash string, err error) {
			d.metrics.PolicyFailures.Inc()
			d.log.Error("policy failed; the last good policy continues", "policy", name, "hash", hash, "err", err)
		}}, d.ilog, pol)
	if err != nil {
		return err
	}
	if resume != "" {
		raw, err := os.ReadFile(filepath.Join(resume, mixerStateFile))
		if err != nil {
			return fmt.Errorf("read mixer state: %w", err)
		}
		if err := d.mix.Restore(ctx, raw, d.ilog); err != nil {
			return fmt.Errorf("restore mixer: %w", err)
		}
	}
	if d.state.TokensBySlot == nil {
		d.state.TokensBySlot, d.state.SamplesBySlot = map[string]int64{}, map[string]int64{}
	}
	d.lastCkpt = d.state.Step
	return nil
}

// newBackend returns the training backend the configuration asks for.
func newBackend(t ops.TrainConfig, threads int) (model.Backend, error) {
	if t.Device == "cpu" {
		return model.NewCPUBackend(threads), nil
	}
	p, err := gpu.ParsePrecision(t.Precision)
	if err != nil {
		return nil, err
	}
	b, err := gpu.New(gpu.Options{Precision: p})
	if err != nil {
		return nil, fmt.Errorf("train.device cuda: %w", err)
	}
	return b, nil
}

// policyModule returns the wasm of a built-in policy name or a .wasm file.
func policyModule(spec string) ([]byte, string, error) {
	if filepath.Ext(spec) == ".wasm" {
		b, err := os.ReadFile(spec)
		if err != nil {
			return nil, "", fmt.Errorf("policy: %w", err)
		}
		return b, filepath.Base(spec), nil
	}
	b, err := policies.Builtin(spec)
	if err != nil {
		return nil, "", err
	}
	return b, spec, nil
}

// scratchConfig sizes a new model for the tokenizer and sequence length.
func scratchConfig(cfg ops.Config, tok *tokenizer.Tokenizer) (model.Config, error) {
	mc, err := model.Preset(cfg.Model.Preset)
	if err != nil {
		return model.Config{}, err
	}
	// Round the vocabulary up to a multiple of 64 for GEMM-friendly shapes.
	mc.VocabSize = (tok.VocabSize() + 63) / 64 * 64
	mc.MaxPositionEmbeddings = max(mc.MaxPositionEmbeddings, cfg.Train.SeqLen)
	ids := map[string]*int{"<|begin_of_text|>": &mc.BOSTokenID, "<|end_of_text|>": &mc.EOSTokenID}
	for tokStr, dst := range ids {
		id, ok := tok.TokenID(tokStr)
		if !ok {
			return model.Config{}, fmt.Errorf("tokenizer lacks %s", tokStr)
		}
		*dst = int(id)
	}
	if id, ok := tok.TokenID("<|pad|>"); ok {
		p := int(id)
		mc.PadTokenID = &p
	}
	return mc, nil
}

// TrainOptions maps the configuration to the trainer's options.
func TrainOptions(cfg ops.Config) model.TrainOptions {
	o := model.DefaultTrainOptions()
	total := cfg.Train.MaxSteps
	if total == 0 {
		total = math.MaxInt32
	}
	o.Schedule = model.Schedule{Kind: cfg.Train.Schedule, PeakLR: cfg.Train.LR, MinLR: cfg.Train.MinLR,
		Warmup: cfg.Train.WarmupSteps, Total: total, Decay: max(1, total/10)}
	o.WeightDecay, o.ClipNorm, o.Seed = cfg.Train.WeightDecay, cfg.Train.GradClip, cfg.Train.Seed
	return o
}

// maxWaiting bounds the fresh samples held in memory ahead of training.
const maxWaiting = 1024

// pump moves samples from the log reader into the mixer.
func (d *Daemon) pump(ctx context.Context, r *ingest.Reader) {
	buf := make([]ingest.Sample, 0, 64)
	for {
		s, err := r.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("ingest reader stopped", "err", err)
			}
			return
		}
		d.metrics.IngestSamples.WithLabelValues(s.Bucket.String()).Inc()
		// Backpressure: the log keeps what the mixer has no room for. The
		// pump sleeps until the training goroutine takes a batch (no
		// polling: every wake-up on a busy machine delays a training op).
		for d.mix.Waiting() > maxWaiting {
			select {
			case <-ctx.Done():
				return
			case <-d.batchTaken:
			}
		}
		buf = append(buf[:0], s)
		if err := d.mix.Add(buf); err != nil {
			d.log.Error("mixer refused samples", "err", err)
			return
		}
	}
}

// trainLoop draws batches and trains until ctx ends or max_steps is reached.
func (d *Daemon) trainLoop(ctx context.Context) error {
	for {
		d.mu.Lock()
		maxSteps := d.live.Train.MaxSteps
		step := d.state.Step
		d.mu.Unlock()
		if maxSteps > 0 && step >= maxSteps {
			d.log.Info("max_steps reached", "step", step)
			return nil
		}
		mixStart := time.Now()
		batch, err := d.mix.Next(ctx)
		if err == nil {
			select {
			case d.batchTaken <- struct{}{}:
			default:
			}
			d.metrics.BatchSeconds.Observe(time.Since(mixStart).Seconds())
			for s, p := range batch.Stats.Proportions {
				d.metrics.MixtureTarget.WithLabelValues(mixer.SlotName(s)).Set(p)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("mixer: %w", err)
		}
		if d.cfg.Train.WhenDry == "idle" && freshSamples(batch) == 0 {
			// Nothing fresh: wait for the stream instead of replaying.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		// A started step finishes even if a signal arrives meanwhile.
		if err := d.trainStep(context.WithoutCancel(ctx), batch); err != nil {
			return err
		}
		d.mu.Lock()
		due := d.state.Step-d.lastCkpt >= d.cfg.Train.CheckpointEvery
		d.mu.Unlock()
		if due {
			if err := d.checkpoint(false); err != nil {
				return err
			}
		}
		d.maybeSnapshotForEval()
		if d.opts.StopWhenDrained {
			drained, err := d.drained(ctx)
			if err != nil {
				return err
			}
			if drained {
				d.log.Info("log drained", "step", d.state.Step)
				return nil
			}
		}
	}
}

// drained reports whether every message in the log has been handed to the
// mixer and trained or dropped.
func (d *Daemon) drained(ctx context.Context) (bool, error) {
	if d.mix.Waiting() > 0 {
		return false, nil
	}
	// A JetStream request whose answer is lost would wait for ctx forever.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	last, err := d.ilog.LastSeq(cctx)
	if err != nil {
		return false, err
	}
	return d.mix.NextFreshSeq() > last, nil
}

func freshSamples(b *mixer.Batch) int {
	n := 0
	for _, s := range b.Samples {
		if !s.Replay {
			n++
		}
	}
	return n
}

// ToModelBatch shares the mixer batch's slices with a model batch (padding's
// PadSlot bucket is ignored by the model: padding has no target).
func ToModelBatch(b *mixer.Batch) model.Batch {
	return model.Batch{B: b.B, T: b.T, Tokens: b.Tokens, Targets: b.Targets, Weights: b.Weights,
		DocIDs: b.DocIDs, Positions: b.Positions, Buckets: b.Buckets}
}

func (d *Daemon) trainStep(ctx context.Context, b *mixer.Batch) error {
	d.mu.Lock()
	lr, minLR := d.live.Train.LR, d.live.Train.MinLR
	d.mu.Unlock()
	d.tr.SetLR(lr, minLR)
	start := time.Now()
	res, err := d.tr.Step(ctx, []model.Batch{ToModelBatch(b)})
	if errors.Is(err, model.ErrNoLoss) {
		d.log.Debug("batch without targets skipped", "samples", len(b.Samples))
		return nil
	}
	if err != nil {
		return fmt.Errorf("train step: %w", err)
	}
	elapsed := time.Since(start).Seconds()
	var slotLoss [mixer.NumSlots]float32
	bucketLoss := map[string]float64{}
	fractions := map[string]float64{}
	for s := 0; s < mixer.NumSlots; s++ {
		slotLoss[s] = float32(math.NaN())
		name := mixer.SlotName(s)
		if res.BucketWeight[s] > 0 {
			l := res.BucketLoss[s] / res.BucketWeight[s]
			slotLoss[s] = float32(l)
			bucketLoss[name] = l
			d.metrics.Loss.WithLabelValues(name).Set(l)
		}
		if res.Tokens > 0 {
			fractions[name] = float64(res.BucketTokens[s]) / float64(res.Tokens)
			d.metrics.Mixture.WithLabelValues(name).Set(fractions[name])
		}
		d.metrics.TrainTokens.WithLabelValues(name).Add(float64(res.BucketTokens[s]))
	}
	d.mix.ReportLoss(slotLoss)
	d.metrics.Steps.Inc()
	d.metrics.StepSeconds.Observe(elapsed)
	d.metrics.LossTotal.Set(res.Loss)
	d.metrics.PackingEff.Set(b.Stats.Efficiency)
	tps := float64(b.B*b.T) / elapsed
	d.metrics.TokensPerSecond.Set(tps)

	d.mu.Lock()
	d.state.Step = res.Step
	var total int64
	for s := 0; s < mixer.NumSlots; s++ {
		d.state.TokensBySlot[mixer.SlotName(s)] += int64(res.BucketTokens[s])
	}
	for _, sr := range b.Samples {
		d.state.SamplesBySlot[mixer.SlotName(mixer.SlotOf(sr.Bucket, sr.Replay))]++
		if d.opts.RecordTrained && !sr.Replay {
			d.state.Trained = append(d.state.Trained, sr.ID)
		}
	}
	for _, v := range d.state.TokensBySlot {
		total += v
	}
	if p := d.mix.Policy(); p != nil && (len(d.state.Policies) == 0 || d.state.Policies[len(d.state.Policies)-1].Hash != b.PolicyHash) {
		d.state.Policies = append(d.state.Policies, PolicySpan{Name: b.PolicyName, Hash: b.PolicyHash, FromStep: res.Step})
	}
	step := d.state.Step
	d.mu.Unlock()
	d.status.RecordStep(step, total, tps, d.mix.NextFreshSeq(),
		ops.LossPoint{Step: step, Loss: res.Loss, Buckets: bucketLoss}, ops.MixPoint{Step: step, Fractions: fractions})
	if d.opts.OnStep != nil {
		d.opts.OnStep(step, b)
	}
	if step%10 == 0 {
		d.log.Info("step", "step", step, "loss", fmt.Sprintf("%.4f", res.Loss), "tok_s", int(tps), "lr", res.LR, "policy", b.PolicyName)
	}
	return nil
}

// checkpoint takes a training checkpoint. The state is copied between two
// steps on the training goroutine (weights, AdamW moments, mixer state, run
// state: a few memory copies) and written to disk by a background goroutine
// while training goes on; wait makes it synchronous (shutdown). At most one
// write is in flight: a new checkpoint first waits for the previous one,
// and returns its error.
func (d *Daemon) checkpoint(wait bool) error {
	if d.tr == nil || d.mix == nil {
		return nil
	}
	if err := d.waitCheckpoint(); err != nil {
		return err
	}
	start := time.Now()
	ms, err := d.mix.State()
	if err != nil {
		return fmt.Errorf("checkpoint: mixer state: %w", err)
	}
	d.mu.Lock()
	st := d.state
	st.NextFreshSeq = d.mix.NextFreshSeq()
	st.Trained = append([]string(nil), d.state.Trained...)
	st.TokensBySlot = copyMap(d.state.TokensBySlot)
	st.SamplesBySlot = copyMap(d.state.SamplesBySlot)
	st.Policies = append([]PolicySpan(nil), d.state.Policies...)
	d.mu.Unlock()
	weights, err := d.model.Clone(model.NewCPUBackend(1))
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	opt, err := d.tr.Snapshot()
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	d.mu.Lock()
	d.lastCkpt = st.Step
	d.mu.Unlock()
	done := make(chan error, 1)
	d.ckptPending = done
	go func() {
		err := saveCheckpoint(d.ckptDir, weights, d.tok, opt, ms, st)
		if err == nil {
			d.metrics.CheckpointSecond.Observe(time.Since(start).Seconds())
			d.log.Debug("checkpoint written", "step", st.Step, "seconds", time.Since(start).Seconds())
		}
		done <- err
	}()
	if wait {
		return d.waitCheckpoint()
	}
	return nil
}

// waitCheckpoint waits for the checkpoint being written, if any.
func (d *Daemon) waitCheckpoint() error {
	if d.ckptPending == nil {
		return nil
	}
	err := <-d.ckptPending
	d.ckptPending = nil
	if err != nil {
		d.log.Error("checkpoint failed", "err", err)
	}
	return err
}

func (d *Daemon) close() error {
	var errs []error
	if d.host != nil {
		errs = append(errs, d.host.Close(context.Background()))
	}
	for _, be := range []model.Backend{d.evalBackend, d.backend} {
		if c, ok := be.(interface{ Close() error }); ok {
			errs = append(errs, c.Close())
		}
	}
	if d.conn != nil {
		errs = append(errs, d.conn.Close())
	}
	return errors.Join(errs...)
}

func (d *Daemon) recordPolicy(p *mixer.Policy, step int) {
	if p == nil {
		return
	}
	d.status.RecordPolicy(ops.PolicyInfo{Name: p.Name(), Hash: p.Hash(), Since: step, At: time.Now().UTC()})
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfs.WriteFile(path, raw)
}

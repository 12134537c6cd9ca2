package mixer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"replayd/policies/abi"
)

// HostConfig configures the policy sandbox.
type HostConfig struct {
	// MemoryLimitPages caps a policy's linear memory in 64 KiB pages
	// (default 1024 = 64 MiB; a Go guest needs a few MiB).
	MemoryLimitPages uint32
	// CallTimeout bounds one decide or mix call, a whole batch (default 1s).
	CallTimeout time.Duration
	// LoadTimeout bounds instantiation: the module's start function,
	// abi_version and init (default 10s).
	LoadTimeout time.Duration
	// Seed seeds the deterministic byte stream a guest reads as WASI
	// random_get (the Go runtime reads it for map hash seeds).
	Seed uint64
	// Cache is a wazero compilation cache to share compiled code between
	// hosts (nil: a new in-memory cache).
	Cache wazero.CompilationCache
}

func (c *HostConfig) defaults() {
	if c.MemoryLimitPages == 0 {
		c.MemoryLimitPages = 1024
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = time.Second
	}
	if c.LoadTimeout <= 0 {
		c.LoadTimeout = 10 * time.Second
	}
}

// Host runs policy modules in a wazero sandbox: no filesystem, network,
// environment or arguments; wazero's fake clocks (walltime and nanotime
// stand still, sleeps return at once); a seeded deterministic random
// source; capped memory; every call bounded by a deadline that closes the
// instance when it passes. A Host compiles each distinct module once.
type Host struct {
	cfg HostConfig
	rt  wazero.Runtime

	mu       sync.Mutex
	compiled map[[32]byte]wazero.CompiledModule
}

// NewHost starts a wazero runtime with WASI preview 1 (which the Go guest
// runtime imports) and the sandbox limits of cfg.
func NewHost(ctx context.Context, cfg HostConfig) (*Host, error) {
	cfg.defaults()
	if cfg.Cache == nil {
		cfg.Cache = wazero.NewCompilationCache()
	}
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(cfg.MemoryLimitPages).
		WithCloseOnContextDone(true).
		WithCompilationCache(cfg.Cache)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("mixer: instantiate wasi: %w", err)
	}
	return &Host{cfg: cfg, rt: rt, compiled: map[[32]byte]wazero.CompiledModule{}}, nil
}

// Close releases the runtime and every instance and compiled module.
func (h *Host) Close(ctx context.Context) error {
	if err := h.rt.Close(ctx); err != nil {
		return fmt.Errorf("mixer: close wasm runtime: %w", err)
	}
	return nil
}

// LoadOptions carry the inputs of the dry run that validates a policy
// before it is accepted. Zero values get synthetic inputs.
type LoadOptions struct {
	// Config is the blob passed to the module's init export.
	Config []byte
	// Stats are the mix input of the dry run (e.g. Mixer.DryRunInput()).
	Stats *abi.MixInput
	// Samples are the decide input of the dry run.
	Samples []abi.SampleMeta
}

func (h *Host) compile(ctx context.Context, wasm []byte) (wazero.CompiledModule, error) {
	key := sha256.Sum256(wasm)
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.compiled[key]; ok {
		return c, nil
	}
	c, err := h.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	h.compiled[key] = c
	return c, nil
}

// Load compiles (once per distinct module), instantiates and validates a
// policy: the exports and their signatures, abi_version, init with the
// config, and a dry run of decide and mix whose answers must be in range.
// Any failure refuses the policy with an error saying why.
func (h *Host) Load(ctx context.Context, name string, wasm []byte, opt LoadOptions) (*Policy, error) {
	// Compilation is not interruptible and its time depends on the host,
	// not on the module's behaviour: no deadline. Instantiation is bounded
	// by LoadTimeout, each dry-run call by CallTimeout.
	mh := sha256.Sum256(wasm)
	p := &Policy{
		host:       h,
		name:       name,
		moduleHash: hex.EncodeToString(mh[:]),
		config:     bytes.Clone(opt.Config),
	}
	p.hash = p.moduleHash
	if len(opt.Config) > 0 {
		// The config changes behaviour, so it is part of the identity.
		hh := sha256.New()
		hh.Write(wasm)
		hh.Write([]byte("\x00config\x00"))
		hh.Write(opt.Config)
		p.hash = hex.EncodeToString(hh.Sum(nil))
	}
	c, err := h.compile(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	p.compiled = c
	if err := checkExports(c, len(opt.Config) > 0); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.instantiateLocked(ctx); err != nil {
		return nil, err
	}
	samples := opt.Samples
	if len(samples) == 0 {
		samples = syntheticSamples()
	}
	stats := opt.Stats
	if stats == nil {
		stats = syntheticStats()
	}
	out := make([]abi.Decision, len(samples))
	if err := p.decideLocked(ctx, abi.DecideHeader{Step: stats.Step, Tokens: stats.Tokens}, samples, out); err != nil {
		p.closeLocked(ctx)
		return nil, fmt.Errorf("dry run: %w", err)
	}
	if _, err := p.mixLocked(ctx, stats); err != nil {
		p.closeLocked(ctx)
		return nil, fmt.Errorf("dry run: %w", err)
	}
	return p, nil
}

type sig struct {
	params, results []api.ValueType
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

var requiredExports = map[string]sig{
	abi.ExportABIVersion: {nil, []api.ValueType{i32}},
	abi.ExportAlloc:      {[]api.ValueType{i32}, []api.ValueType{i32}},
	abi.ExportDecide:     {[]api.ValueType{i32, i32}, []api.ValueType{i64}},
	abi.ExportMix:        {[]api.ValueType{i32, i32}, []api.ValueType{i64}},
}

var initSig = sig{[]api.ValueType{i32, i32}, []api.ValueType{i32}}

func sameTypes(a, b []api.ValueType) bool {
	return bytes.Equal(a, b)
}

func checkExports(c wazero.CompiledModule, needInit bool) error {
	defs := c.ExportedFunctions()
	for name, want := range requiredExports {
		d, ok := defs[name]
		if !ok {
			return fmt.Errorf("missing export %q", name)
		}
		if !sameTypes(d.ParamTypes(), want.params) || !sameTypes(d.ResultTypes(), want.results) {
			return fmt.Errorf("export %q has signature %v -> %v, want %v -> %v",
				name, d.ParamTypes(), d.ResultTypes(), want.params, want.results)
		}
	}
	if d, ok := defs[abi.ExportInit]; ok {
		if !sameTypes(d.ParamTypes(), initSig.params) || !sameTypes(d.ResultTypes(), initSig.results) {
			return fmt.Errorf("export %q has the wrong signature", abi.ExportInit)
		}
	} else if needInit {
		return fmt.Errorf("a config was given but the module has no %q export", abi.ExportInit)
	}
	return nil
}

// syntheticSamples covers every bucket and kind, with spread-out random
// values, so a dry run exercises each branch a policy is likely to have.
func syntheticSamples() []abi.SampleMeta {
	var r splitmix
	r.state = 0x5eed
	out := make([]abi.SampleMeta, 64)
	for i := range out {
		b := uint8(i % abi.NumBuckets)
		out[i] = abi.SampleMeta{
			IDHash: r.next(), Seq: uint64(i + 1), Rand: r.next(), TaskHash: r.next() * uint64(i%2),
			Tokens: uint32(16 + i*37%2000), Bytes: uint32(64 + i*151%8000),
			Kind: b / 2, Bucket: b,
		}
	}
	return out
}

func syntheticStats() *abi.MixInput {
	m := &abi.MixInput{Step: 1000, Tokens: 1 << 22, Rand: 42}
	for i := range abi.NumSlots {
		m.SlotTok[i] = 1 << 19
		m.SlotN[i] = 1000
		m.Loss[i] = 2.5
		m.Avail[i] = 100
	}
	m.Evals = []abi.Eval{{Name: "general_loss", First: 2.0, Latest: 2.4}, {Name: "domain_loss", First: 3, Latest: 2.5}}
	return m
}

// Policy is a loaded, validated policy module with its config. Its methods
// are safe for concurrent use (calls are serialised: an instance has one
// stack). After a failed call the instance is thrown away; the next call
// instantiates a fresh one from the compiled module.
type Policy struct {
	host       *Host
	name       string
	hash       string
	moduleHash string
	config     []byte
	compiled   wazero.CompiledModule

	mu       sync.Mutex
	mod      api.Module
	fnAlloc  api.Function
	fnDecide api.Function
	fnMix    api.Function
	inPtr    uint32 // guest buffer from the last alloc
	inCap    uint32 // and its size
	stderr   *limitedBuffer
	buf      []byte
	stack    [2]uint64
	limit    time.Duration // the deadline of the calls under way, for errors
}

// Name is the policy's name (e.g. "joint-replay").
func (p *Policy) Name() string { return p.name }

// Hash identifies module and config: the hex SHA-256 of the module, or of
// module + "\x00config\x00" + config when a config is given. Batches carry it.
func (p *Policy) Hash() string { return p.hash }

// ModuleHash is the hex SHA-256 of the module bytes alone.
func (p *Policy) ModuleHash() string { return p.moduleHash }

// Config returns the config blob the policy was loaded with.
func (p *Policy) Config() []byte { return bytes.Clone(p.config) }

// Close releases the policy's instance (the compiled module stays with the
// Host). A closed policy re-instantiates on its next call.
func (p *Policy) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closeLocked(ctx)
}

func (p *Policy) closeLocked(ctx context.Context) error {
	if p.mod == nil {
		return nil
	}
	err := p.mod.Close(ctx)
	p.mod = nil
	if err != nil {
		return fmt.Errorf("policy %s: close: %w", p.name, err)
	}
	return nil
}

// limitedBuffer keeps the first 4 KiB a guest writes to stderr (a Go panic
// message) for error reports, and drops the rest.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (p *Policy) instantiateLocked(ctx context.Context) error {
	p.limit = p.host.cfg.LoadTimeout
	ctx, cancel := context.WithTimeout(ctx, p.limit)
	defer cancel()
	p.stderr = &limitedBuffer{}
	var seed splitmix
	seed.state = p.host.cfg.Seed
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(abi.ExportInitialize).
		WithRandSource(&seed).
		WithStdout(io.Discard).
		WithStderr(p.stderr)
	mod, err := p.host.rt.InstantiateModule(ctx, p.compiled, mc)
	if err != nil {
		return p.errorf("instantiate", err, p.host.cfg.LoadTimeout)
	}
	p.mod = mod
	p.fnAlloc = mod.ExportedFunction(abi.ExportAlloc)
	p.fnDecide = mod.ExportedFunction(abi.ExportDecide)
	p.fnMix = mod.ExportedFunction(abi.ExportMix)
	p.inPtr, p.inCap = 0, 0

	res, err := mod.ExportedFunction(abi.ExportABIVersion).Call(ctx)
	if err != nil {
		return p.fail(ctx, "abi_version", err)
	}
	if v := int32(res[0]); v != abi.Version {
		p.closeLocked(ctx)
		return fmt.Errorf("policy %s: abi_version %d, host speaks %d", p.name, v, abi.Version)
	}
	if fn := mod.ExportedFunction(abi.ExportInit); fn != nil {
		ptr, err := p.writeInputLocked(ctx, p.config)
		if err != nil {
			return err
		}
		res, err := fn.Call(ctx, uint64(ptr), uint64(len(p.config)))
		if err != nil {
			return p.fail(ctx, "init", err)
		}
		if rc := int32(res[0]); rc != 0 {
			p.closeLocked(ctx)
			return fmt.Errorf("policy %s: init refused its config (code %d)%s", p.name, rc, p.stderrNote())
		}
	}
	return nil
}

func (p *Policy) stderrNote() string {
	if p.stderr == nil || p.stderr.b.Len() == 0 {
		return ""
	}
	return fmt.Sprintf(" (guest stderr: %q)", bytes.TrimSpace(p.stderr.b.Bytes()))
}

// errorf wraps a call error with the policy name, and names timeouts
// (limit is the deadline the call ran under).
func (p *Policy) errorf(what string, err error, limit time.Duration) error {
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return fmt.Errorf("policy %s: %s: timed out after %v: %w", p.name, what, limit, err)
		case sys.ExitCodeContextCanceled:
			return fmt.Errorf("policy %s: %s: canceled: %w", p.name, what, err)
		}
	}
	return fmt.Errorf("policy %s: %s: %w%s", p.name, what, err, p.stderrNote())
}

// fail throws the instance away after a failed call and returns the error.
func (p *Policy) fail(ctx context.Context, what string, err error) error {
	e := p.errorf(what, err, p.limit)
	p.closeLocked(context.WithoutCancel(ctx))
	return e
}

// reserveLocked returns a view of n bytes of guest memory obtained from
// alloc (reusing the previous allocation when it is large enough) and its
// address. Inputs are encoded straight into it: no intermediate copy.
func (p *Policy) reserveLocked(ctx context.Context, n int) ([]byte, uint32, error) {
	if uint32(n) > p.inCap || p.inCap == 0 {
		p.stack[0] = uint64(max(n, 1))
		if err := p.fnAlloc.CallWithStack(ctx, p.stack[:]); err != nil {
			return nil, 0, p.fail(ctx, "alloc", err)
		}
		p.inPtr, p.inCap = uint32(p.stack[0]), uint32(max(n, 1))
		if p.inPtr == 0 {
			p.closeLocked(ctx)
			return nil, 0, fmt.Errorf("policy %s: alloc(%d) returned 0", p.name, n)
		}
	}
	// Read returns a view of guest memory; the guest cannot run (and grow
	// or move it) until the next call.
	v, ok := p.mod.Memory().Read(p.inPtr, uint32(n))
	if !ok {
		p.closeLocked(ctx)
		return nil, 0, fmt.Errorf("policy %s: alloc returned %#x, outside guest memory for %d bytes", p.name, p.inPtr, n)
	}
	return v, p.inPtr, nil
}

// writeInputLocked copies b into guest memory and returns its address.
func (p *Policy) writeInputLocked(ctx context.Context, b []byte) (uint32, error) {
	v, ptr, err := p.reserveLocked(ctx, len(b))
	if err != nil {
		return 0, err
	}
	copy(v, b)
	return ptr, nil
}

// ensureLocked instantiates the policy if its instance was thrown away.
func (p *Policy) ensureLocked(ctx context.Context) error {
	if p.mod != nil {
		return nil
	}
	return p.instantiateLocked(ctx)
}

// callLocked runs decide or mix on the n-byte input at ptr (written by the
// caller into the alloc'd buffer) and returns a view of the output in
// guest memory, valid until the next call.
func (p *Policy) callLocked(ctx context.Context, what string, fn api.Function, ptr uint32, n int) ([]byte, error) {
	p.stack[0], p.stack[1] = uint64(ptr), uint64(n)
	if err := fn.CallWithStack(ctx, p.stack[:]); err != nil {
		return nil, p.fail(ctx, what, err)
	}
	optr, on := abi.Unpack(p.stack[0])
	out, ok := p.mod.Memory().Read(optr, on)
	if !ok {
		p.closeLocked(ctx)
		return nil, fmt.Errorf("policy %s: %s answered [%#x, +%d), outside guest memory", p.name, what, optr, on)
	}
	return out, nil
}

// Decide runs the policy's decide on a batch of sample metadata and fills
// out (len(out) == len(samples)) with validated decisions.
func (p *Policy) Decide(ctx context.Context, h abi.DecideHeader, samples []abi.SampleMeta, out []abi.Decision) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.decideLocked(ctx, h, samples, out)
}

func (p *Policy) decideLocked(ctx context.Context, h abi.DecideHeader, samples []abi.SampleMeta, out []abi.Decision) error {
	if err := p.ensureLocked(ctx); err != nil {
		return err
	}
	p.limit = p.host.cfg.CallTimeout
	ctx, cancel := context.WithTimeout(ctx, p.limit)
	defer cancel()
	h.Count = uint32(len(samples))
	size := abi.DecideHeaderSize + len(samples)*abi.SampleMetaSize
	v, ptr, err := p.reserveLocked(ctx, size)
	if err != nil {
		return err
	}
	abi.AppendDecideHeader(v[:0], h)
	for i := range samples {
		abi.PutSampleMeta(v[abi.DecideHeaderSize+i*abi.SampleMetaSize:], &samples[i])
	}
	res, err := p.callLocked(ctx, abi.ExportDecide, p.fnDecide, ptr, size)
	if err != nil {
		return err
	}
	if len(res) != len(samples)*abi.DecisionSize {
		p.closeLocked(ctx)
		return fmt.Errorf("policy %s: decide answered %d bytes for %d samples, want %d",
			p.name, len(res), len(samples), len(samples)*abi.DecisionSize)
	}
	if err := abi.DecodeDecisions(res, out[:len(samples)]); err != nil {
		p.closeLocked(ctx)
		return fmt.Errorf("policy %s: decide: %w", p.name, err)
	}
	return nil
}

// Mix runs the policy's mix on the statistics and returns validated
// proportions normalised to sum 1.
func (p *Policy) Mix(ctx context.Context, in *abi.MixInput) ([abi.NumSlots]float64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mixLocked(ctx, in)
}

func (p *Policy) mixLocked(ctx context.Context, in *abi.MixInput) ([abi.NumSlots]float64, error) {
	if err := p.ensureLocked(ctx); err != nil {
		return [abi.NumSlots]float64{}, err
	}
	p.limit = p.host.cfg.CallTimeout
	ctx, cancel := context.WithTimeout(ctx, p.limit)
	defer cancel()
	p.buf = abi.AppendMixInput(p.buf[:0], in)
	ptr, err := p.writeInputLocked(ctx, p.buf)
	if err != nil {
		return [abi.NumSlots]float64{}, err
	}
	res, err := p.callLocked(ctx, abi.ExportMix, p.fnMix, ptr, len(p.buf))
	if err != nil {
		return [abi.NumSlots]float64{}, err
	}
	props, err := abi.ParseProportions(res)
	if err != nil {
		p.closeLocked(ctx)
		return props, fmt.Errorf("policy %s: %w", p.name, err)
	}
	return props, nil
}

// splitmix is SplitMix64: a tiny, fast, serialisable generator. The mixer
// draws from it and it is the guest's WASI random source.
type splitmix struct{ state uint64 }

func (s *splitmix) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	z := s.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float returns a uniform float64 in [0, 1).
func (s *splitmix) float() float64 { return abi.Uniform(s.next()) }

// Read fills b with the stream's bytes (io.Reader for WASI random_get).
func (s *splitmix) Read(b []byte) (int, error) {
	for i := 0; i < len(b); i += 8 {
		v := s.next()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return len(b), nil
}

// mix64 hashes (seed, seq) to the per-sample random a policy sees, so a
// sample's draw does not depend on when it is decided.
func mix64(seed, seq uint64) uint64 {
	s := splitmix{state: seed ^ (seq * 0xd1b54a32d192ed03)}
	return s.next()
}

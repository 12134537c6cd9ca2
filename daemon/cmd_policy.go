package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"replayd/ingest"
	"replayd/mixer"
	"replayd/mixer/policystore"
	"replayd/tokenizer"
)

const policyUsage = `usage:
  replayd policy push FILE.wasm [--name N] [--config JSON|@FILE] --url nats://...
        validate the module locally, store it and make it the active policy
  replayd policy list --url nats://...       the push/rollback history, active last
  replayd policy rollback --url nats://...   make the previously active policy active
  replayd policy test FILE.wasm|BUILTIN --data FILE.jsonl [--config JSON|@FILE]
        [--tokenizer tokenizer.json] [--batch 8] [--seq-len 512] [--seed 1]
        [--domain fin] [--general-domain gen]
        offline (no NATS): run the policy over wire samples and print the mixture
common NATS flags: --url, --creds, --object-bucket, --kv-bucket
`

// runPolicy is `replayd policy`: push, list, roll back and test mixing
// policies.
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		io.WriteString(stdout, policyUsage)
		return nil
	}
	sub, rest := args[0], args[1:]
	fs := pflag.NewFlagSet("policy "+sub, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	switch sub {
	case "push", "list", "rollback":
		return policyStoreCmd(ctx, sub, fs, rest, stdout)
	case "test":
		return policyTest(ctx, fs, rest, stdout)
	}
	io.WriteString(stderr, policyUsage)
	return fmt.Errorf("policy: unknown subcommand %q: %w", sub, ErrUsage)
}

// readConfigFlag returns the --config value: inline JSON, or @FILE.
func readConfigFlag(v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	if path, ok := strings.CutPrefix(v, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("policy config: %w", err)
		}
		return b, nil
	}
	return []byte(v), nil
}

// loadPolicyArg loads a .wasm file or a built-in policy name and validates
// it in a fresh host.
func loadPolicyArg(ctx context.Context, host *mixer.Host, spec, name string, config []byte) ([]byte, *mixer.Policy, error) {
	wasm, n, err := policyModule(spec)
	if err != nil {
		return nil, nil, err
	}
	if name == "" {
		name = strings.TrimSuffix(n, ".wasm")
	}
	p, err := host.Load(ctx, name, wasm, mixer.LoadOptions{Config: config})
	if err != nil {
		return nil, nil, fmt.Errorf("policy refused: %w", err)
	}
	return wasm, p, nil
}

func policyStoreCmd(ctx context.Context, sub string, fs *pflag.FlagSet, args []string, stdout io.Writer) error {
	url := fs.String("url", "", "NATS server URL(s) (required)")
	creds := fs.String("creds", "", "NATS credentials file")
	objBucket := fs.String("object-bucket", policystore.DefaultObjectBucket, "object store bucket of the modules")
	kvBucket := fs.String("kv-bucket", policystore.DefaultKVBucket, "KV bucket of the active pointer")
	name := fs.String("name", "", "policy name (push; default: the file name)")
	cfgFlag := fs.String("config", "", "policy config passed to init (push): JSON or @FILE")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *url == "" {
		return fmt.Errorf("policy %s: --url is required: %w", sub, ErrUsage)
	}
	var wasm, config []byte
	if sub == "push" {
		if fs.NArg() != 1 {
			return fmt.Errorf("policy push: want one FILE.wasm: %w", ErrUsage)
		}
		var err error
		if config, err = readConfigFlag(*cfgFlag); err != nil {
			return err
		}
		// Refuse a bad module here rather than in every daemon.
		host, err := mixer.NewHost(ctx, mixer.HostConfig{})
		if err != nil {
			return err
		}
		defer host.Close(context.WithoutCancel(ctx))
		var p *mixer.Policy
		if wasm, p, err = loadPolicyArg(ctx, host, fs.Arg(0), *name, config); err != nil {
			return err
		}
		*name = p.Name()
	}
	conn, err := ingest.Connect(ctx, ingest.NATSOptions{URL: *url, CredsFile: *creds, Name: "replayd-policy"})
	if err != nil {
		return fmt.Errorf("policy %s: %w", sub, err)
	}
	defer conn.Close()
	st, err := policystore.Open(ctx, conn.JS, *objBucket, *kvBucket)
	if err != nil {
		return err
	}
	switch sub {
	case "push":
		p, err := st.Push(ctx, *name, wasm, config)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s sha256=%s object=%s revision=%d\n", p.Name, p.SHA256, p.Object, p.Revision)
	case "rollback":
		p, err := st.Rollback(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "active %s sha256=%s object=%s revision=%d\n", p.Name, p.SHA256, p.Object, p.Revision)
	case "list":
		h, err := st.History(ctx)
		if err != nil {
			return err
		}
		if len(h) == 0 {
			fmt.Fprintln(stdout, "no policy pushed")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REV\tPUSHED\tNAME\tSHA256\tCONFIG\tNOTE")
		for i, p := range h {
			note := ""
			if p.Rollback {
				note = "rollback"
			}
			if i == len(h)-1 {
				note = strings.TrimSpace(note + " active")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", p.Revision, p.PushedAt.Format("2006-01-02T15:04:05Z"),
				p.Name, p.SHA256[:16], string(p.Config), note)
		}
		return tw.Flush()
	}
	return nil
}

// wireLine is the part of a JSONL line that says where a sample belongs:
// the kind is guessed from the fields when absent ("text" → dapt).
type wireLine struct {
	Kind   string          `json:"kind"`
	Domain string          `json:"domain"`
	Text   json.RawMessage `json:"text"`
}

func policyTest(ctx context.Context, fs *pflag.FlagSet, args []string, stdout io.Writer) error {
	data := fs.String("data", "", "JSONL file of wire samples (required)")
	tokPath := fs.String("tokenizer", "", "tokenizer.json (default: estimate 4 bytes per token)")
	cfgFlag := fs.String("config", "", "policy config passed to init: JSON or @FILE")
	batch := fs.Int("batch", 8, "rows per batch")
	seqLen := fs.Int("seq-len", 512, "positions per row")
	seed := fs.Uint64("seed", 1, "mixer seed")
	domain := fs.String("domain", "fin", "domain of lines without a \"domain\" field")
	general := fs.String("general-domain", "gen", "the domain that counts as general data")
	maxBatches := fs.Int("max-batches", 100000, "stop after this many batches")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *data == "" {
		return fmt.Errorf("policy test: want FILE.wasm|BUILTIN and --data FILE.jsonl: %w", ErrUsage)
	}
	config, err := readConfigFlag(*cfgFlag)
	if err != nil {
		return err
	}
	var tmpl *tokenizer.ChatTemplate
	if *tokPath != "" {
		tok, err := tokenizer.Load(*tokPath)
		if err != nil {
			return fmt.Errorf("policy test: %w", err)
		}
		if tmpl, err = tok.ChatTemplate(); err != nil {
			return fmt.Errorf("policy test: %w", err)
		}
	}
	samples, bad, err := readWireSamples(*data, *domain, *general, tmpl)
	if err != nil {
		return err
	}
	host, err := mixer.NewHost(ctx, mixer.HostConfig{Seed: *seed})
	if err != nil {
		return err
	}
	defer host.Close(context.WithoutCancel(ctx))
	_, pol, err := loadPolicyArg(ctx, host, fs.Arg(0), "", config)
	if err != nil {
		return err
	}
	log := &mixer.MemLog{}
	for i := range samples {
		samples[i] = log.Append(samples[i])
	}
	m, err := mixer.New(mixer.Config{B: *batch, T: *seqLen, Seed: *seed}, log, pol)
	if err != nil {
		return err
	}
	if err := m.Add(samples); err != nil {
		return err
	}
	var (
		in                    [ingest.NumBuckets]int
		kept, pooled, dropped [ingest.NumBuckets]int
		slotN                 [mixer.NumSlots]int
		asked                 [mixer.NumSlots]float64
		total, batches, used  int
		eff                   float64
		policyErrs, fallbacks int
	)
	for _, s := range samples {
		in[s.Bucket]++
	}
	for batches < *maxBatches && (batches == 0 || m.Waiting() > 0) {
		b, err := m.Next(ctx)
		if err != nil {
			return err
		}
		if batches == 0 {
			asked = b.Stats.Proportions
		}
		batches++
		for k := range ingest.NumBuckets {
			kept[k] += b.Stats.Kept[k]
			pooled[k] += b.Stats.Pooled[k]
			dropped[k] += b.Stats.DroppedBy[k]
		}
		for _, r := range b.Samples {
			slotN[mixer.SlotOf(r.Bucket, r.Replay)]++
			total++
		}
		eff += b.Stats.Efficiency
		used += len(b.Samples)
		policyErrs += len(b.Stats.PolicyErrors)
		fallbacks += b.Stats.Fallbacks
	}
	fmt.Fprintf(stdout, "policy %s hash %s (module sha256 %s)\n", pol.Name(), pol.Hash(), pol.ModuleHash())
	fmt.Fprintf(stdout, "samples %d (%d lines refused), batches %d of %dx%d, packing efficiency %.3f, fallback draws %d, policy errors %d\n\n",
		len(samples), bad, batches, *batch, *seqLen, eff/float64(max(batches, 1)), fallbacks, policyErrs)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUCKET\tIN\tKEPT\tREPLAY-ONLY\tDROPPED\tKEPT FRACTION")
	for k := range ingest.NumBuckets {
		frac := "-"
		if in[k] > 0 {
			frac = fmt.Sprintf("%.3f", float64(kept[k])/float64(in[k]))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", ingest.Bucket(k), in[k], kept[k], pooled[k], dropped[k], frac)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
	fmt.Fprintln(tw, "SLOT\tASKED\tREALISED\tDOCS\t\t")
	for s := range mixer.NumSlots {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%d\t\t\n", mixer.SlotName(s), asked[s], float64(slotN[s])/float64(max(total, 1)), slotN[s])
	}
	return tw.Flush()
}

// readWireSamples decodes a JSONL file of wire samples with ingest's
// validation, and tokenizes them with tmpl or estimates 4 bytes a token.
func readWireSamples(path, domain, general string, tmpl *tokenizer.ChatTemplate) ([]ingest.Sample, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("policy test: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out []ingest.Sample
	bad := 0
	for line := 1; sc.Scan(); line++ {
		raw := sc.Bytes()
		if len(strings.TrimSpace(string(raw))) == 0 {
			continue
		}
		var wl wireLine
		if err := json.Unmarshal(raw, &wl); err != nil {
			bad++
			continue
		}
		kind := ingest.KindSFT
		if wl.Kind != "" {
			if kind, err = ingest.ParseKind(wl.Kind); err != nil {
				return nil, 0, fmt.Errorf("%s:%d: %w", filepath.Base(path), line, err)
			}
		} else if len(wl.Text) > 0 {
			kind = ingest.KindDAPT
		}
		rec, err := ingest.Limits{}.Decode(kind, raw)
		if err != nil {
			bad++
			continue
		}
		d := domain
		if wl.Domain != "" {
			d = wl.Domain
		}
		s := ingest.Sample{ID: rec.ID, Kind: kind, Domain: d, Bucket: ingest.BucketOf(kind, d == general),
			Task: rec.Task, Bytes: len(raw), Meta: rec.Meta}
		if s.ID == "" {
			s.ID = ingest.ContentID(raw)
		}
		switch {
		case tmpl != nil && kind == ingest.KindDAPT:
			s.Tokens, s.LossMask = tmpl.EncodeDAPT(rec.Text)
		case tmpl != nil:
			if s.Tokens, s.LossMask, err = tmpl.EncodeChat(rec.Turns); err != nil {
				bad++
				continue
			}
		case kind == ingest.KindDAPT:
			s.Tokens, s.LossMask = estimateTokens(rec.Text, 1, s.Tokens, s.LossMask)
		default:
			for _, t := range rec.Turns {
				var m uint8
				if t.Role == "assistant" {
					m = 1
				}
				s.Tokens, s.LossMask = estimateTokens(t.Content, m, s.Tokens, s.LossMask)
			}
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("policy test: read %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, bad, errors.New("policy test: no valid samples in --data")
	}
	return out, bad, nil
}

// estimateTokens appends about len(text)/4 (at least 1) placeholder tokens
// with the given mask value: enough for the mixer, which only counts them.
func estimateTokens(text string, mask uint8, toks []int32, masks []uint8) ([]int32, []uint8) {
	n := max(1, len(text)/4)
	for i := range n {
		toks = append(toks, int32(i%50000))
		masks = append(masks, mask)
	}
	return toks, masks
}

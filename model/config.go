// Package model is the LLaMA-architecture language model of replayd: its
// configuration (Hugging Face LlamaConfig compatible), parameter layout,
// explicit forward and backward passes over a Backend, AdamW with schedules,
// KV-cache decoding, and safetensors checkpoints in Hugging Face naming.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"replayd/internal/atomicfs"
)

// MaxBuckets is the number of loss buckets a Batch may use (bucket indices 0..7).
const MaxBuckets = 8

// Config mirrors the fields of Hugging Face's LlamaConfig that define the
// architecture, so config.json files round-trip with transformers.
type Config struct {
	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	NumKeyValueHeads      int     `json:"num_key_value_heads"`
	IntermediateSize      int     `json:"intermediate_size"`
	RMSNormEps            float64 `json:"rms_norm_eps"`
	RopeTheta             float64 `json:"rope_theta"`
	TieWordEmbeddings     bool    `json:"tie_word_embeddings"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	BOSTokenID            int     `json:"bos_token_id"`
	EOSTokenID            int     `json:"eos_token_id"`
	// ExtraEOSTokenIDs are further end-of-sequence ids: config.json may give
	// eos_token_id as a list (Llama 3: end_of_text, eom, eot), whose first
	// id is EOSTokenID. Generation stops at any of them.
	ExtraEOSTokenIDs []int `json:"-"`
	PadTokenID       *int  `json:"pad_token_id"`
	// HiddenAct must be "silu" (SwiGLU); kept so HF configs validate.
	HiddenAct string `json:"hidden_act,omitempty"`
	// InitializerRange is the std of the normal initialisation of New.
	InitializerRange float64 `json:"initializer_range,omitempty"`
}

// hfConfig is the on-disk config.json: Config plus the fields transformers
// needs to pick the class and dtype.
type hfConfig struct {
	Architectures []string `json:"architectures"`
	ModelType     string   `json:"model_type"`
	TorchDtype    string   `json:"torch_dtype"`
	HeadDim       int      `json:"head_dim,omitempty"`
	AttentionBias bool     `json:"attention_bias"`
	MLPBias       bool     `json:"mlp_bias"`
	// RopeScaling (Llama 3.1's "llama3", "linear", "dynamic", YaRN) changes
	// the positions' frequencies; it is refused rather than ignored.
	RopeScaling json.RawMessage `json:"rope_scaling,omitempty"`
	// EOS shadows Config.EOSTokenID (the shallower field wins in
	// encoding/json): a number or a list of numbers.
	EOS json.RawMessage `json:"eos_token_id"`
	Config
}

// eosIDs reads eos_token_id: a number, a list of numbers, or null/absent
// (none: -1, which no token has).
func eosIDs(raw json.RawMessage) (first int, extra []int, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return -1, nil, nil
	}
	if err := json.Unmarshal(raw, &first); err == nil {
		return first, nil, nil
	}
	var ids []int
	if err := json.Unmarshal(raw, &ids); err != nil || len(ids) == 0 {
		return 0, nil, fmt.Errorf("eos_token_id %s: want a token id or a non-empty list of them", raw)
	}
	return ids[0], ids[1:], nil
}

// eosJSON writes the end-of-sequence ids back as config.json had them.
func eosJSON(c Config) json.RawMessage {
	var v any = c.EOSTokenID
	switch {
	case c.EOSTokenID < 0 && len(c.ExtraEOSTokenIDs) == 0:
		v = nil
	case len(c.ExtraEOSTokenIDs) > 0:
		v = append([]int{c.EOSTokenID}, c.ExtraEOSTokenIDs...)
	}
	raw, _ := json.Marshal(v) // nil and ints always marshal
	return raw
}

// HeadDim is the per-head width, hidden_size / num_attention_heads.
func (c Config) HeadDim() int { return c.HiddenSize / c.NumAttentionHeads }

// KVDim is the width of the key and value projections.
func (c Config) KVDim() int { return c.HeadDim() * c.NumKeyValueHeads }

// Validate reports the first inconsistency of the configuration.
func (c Config) Validate() error {
	switch {
	case c.VocabSize <= 0, c.HiddenSize <= 0, c.NumHiddenLayers <= 0, c.NumAttentionHeads <= 0, c.IntermediateSize <= 0:
		return errors.New("model config: sizes must be positive")
	case c.NumKeyValueHeads <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0:
		return fmt.Errorf("model config: num_attention_heads %d not a multiple of num_key_value_heads %d", c.NumAttentionHeads, c.NumKeyValueHeads)
	case c.HiddenSize%c.NumAttentionHeads != 0:
		return fmt.Errorf("model config: hidden_size %d not divisible by num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	case c.HeadDim()%2 != 0:
		return errors.New("model config: head dim must be even for RoPE")
	case c.RMSNormEps <= 0 || c.RopeTheta <= 0:
		return errors.New("model config: rms_norm_eps and rope_theta must be positive")
	case c.MaxPositionEmbeddings <= 0:
		return errors.New("model config: max_position_embeddings must be positive")
	case c.HiddenAct != "" && c.HiddenAct != "silu":
		return fmt.Errorf("model config: hidden_act %q unsupported (only silu)", c.HiddenAct)
	}
	return nil
}

func intp(v int) *int { return &v }

// Preset returns a named configuration: "tiny" (tests, demo), "small" and "base".
func Preset(name string) (Config, error) {
	c := Config{
		RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true,
		BOSTokenID: 1, EOSTokenID: 2, PadTokenID: intp(0), HiddenAct: "silu", InitializerRange: 0.02,
	}
	switch name {
	case "tiny":
		c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 512, 64, 2, 4, 2
		c.IntermediateSize, c.MaxPositionEmbeddings = 176, 128
	case "small":
		c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 8192, 256, 4, 8, 4
		c.IntermediateSize, c.MaxPositionEmbeddings = 768, 256
	case "base":
		c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 16384, 512, 8, 8, 4
		c.IntermediateSize, c.MaxPositionEmbeddings = 1408, 512
	default:
		return Config{}, fmt.Errorf("model: unknown preset %q (tiny, small, base)", name)
	}
	return c, nil
}

// LoadConfig reads dir/config.json (a Hugging Face LlamaConfig).
func LoadConfig(dir string) (Config, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	var h hfConfig
	if err := json.Unmarshal(raw, &h); err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", dir, err)
	}
	if h.ModelType != "" && h.ModelType != "llama" {
		return Config{}, fmt.Errorf("load config %s: model_type %q is not llama", dir, h.ModelType)
	}
	if h.AttentionBias || h.MLPBias {
		return Config{}, fmt.Errorf("load config %s: biases are not supported", dir)
	}
	if len(h.RopeScaling) > 0 && string(h.RopeScaling) != "null" {
		return Config{}, fmt.Errorf("load config %s: rope_scaling %s is not supported (only plain RoPE)", dir, h.RopeScaling)
	}
	c := h.Config
	if c.EOSTokenID, c.ExtraEOSTokenIDs, err = eosIDs(h.EOS); err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", dir, err)
	}
	if c.NumKeyValueHeads == 0 { // HF default: MHA
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if h.HeadDim != 0 && c.NumAttentionHeads > 0 && h.HeadDim != c.HiddenSize/c.NumAttentionHeads {
		return Config{}, fmt.Errorf("load config %s: head_dim %d != hidden_size/num_attention_heads", dir, h.HeadDim)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", dir, err)
	}
	return c, nil
}

// writeConfig writes config.json and generation_config.json into dir.
func writeConfig(dir string, c Config, dtype string) error {
	h := hfConfig{Architectures: []string{"LlamaForCausalLM"}, ModelType: "llama", TorchDtype: dtype, HeadDim: c.HeadDim(),
		EOS: eosJSON(c), Config: c}
	if h.HiddenAct == "" {
		h.HiddenAct = "silu"
	}
	raw, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := atomicfs.WriteFile(filepath.Join(dir, "config.json"), raw); err != nil {
		return err
	}
	gen := map[string]any{"bos_token_id": c.BOSTokenID, "eos_token_id": eosJSON(c), "do_sample": false}
	if c.PadTokenID != nil {
		gen["pad_token_id"] = *c.PadTokenID
	}
	raw, err = json.MarshalIndent(gen, "", "  ")
	if err != nil {
		return fmt.Errorf("write generation config: %w", err)
	}
	return atomicfs.WriteFile(filepath.Join(dir, "generation_config.json"), raw)
}

package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Default stream settings.
const (
	DefaultStreamName = "REPLAYD_INGEST"
	DefaultDLQName    = "REPLAYD_DLQ"
	// DefaultDuplicates is the ingest de-duplication window: a sample id
	// published twice within it is stored once (PubAck.Duplicate).
	DefaultDuplicates = time.Hour
	// DefaultDLQDuplicates is the dead-letter de-duplication window. It is
	// long because a daemon that crashed re-reads the log from its last
	// checkpoint and re-rejects the same sequences; "dlq-<seq>" ids make
	// that idempotent only within the window.
	DefaultDLQDuplicates = 24 * time.Hour
	// DefaultDLQMaxAge and DefaultDLQMaxBytes bound the dead-letter stream.
	DefaultDLQMaxAge   = 30 * 24 * time.Hour
	DefaultDLQMaxBytes = 1 << 30
)

// StreamOptions configures the ingest stream (the log) and the dead-letter
// stream.
type StreamOptions struct {
	// Name is the ingest stream (default REPLAYD_INGEST).
	Name string `mapstructure:"name" json:"name"`
	// SubjectPrefix is the ingest subject prefix (default replayd.ingest);
	// the stream captures <prefix>.>.
	SubjectPrefix string `mapstructure:"subject_prefix" json:"subject_prefix"`
	// Domains maps domain name → general (default fin: domain, gen: general).
	Domains Domains `mapstructure:"domains" json:"domains"`
	// Replicas is the JetStream replica count (default 1; 3 on a cluster).
	Replicas int `mapstructure:"replicas" json:"replicas"`
	// MaxBytes caps the stream's storage (0: unlimited); the oldest
	// samples are discarded first, so replay loses its oldest material.
	MaxBytes int64 `mapstructure:"max_bytes" json:"max_bytes"`
	// MaxAge drops samples older than this (0: keep forever).
	MaxAge time.Duration `mapstructure:"max_age" json:"max_age"`
	// Duplicates is the de-duplication window for Nats-Msg-Id (default 1h).
	Duplicates time.Duration `mapstructure:"duplicates" json:"duplicates"`
	// DLQName is the dead-letter stream (default REPLAYD_DLQ).
	DLQName string `mapstructure:"dlq_name" json:"dlq_name"`
	// DLQPrefix is the dead-letter subject prefix (default replayd.dlq).
	DLQPrefix string `mapstructure:"dlq_prefix" json:"dlq_prefix"`
	// DLQMaxAge, DLQMaxBytes and DLQDuplicates bound the dead-letter stream
	// (defaults 30 days, 1 GiB, 24h).
	DLQMaxAge     time.Duration `mapstructure:"dlq_max_age" json:"dlq_max_age"`
	DLQMaxBytes   int64         `mapstructure:"dlq_max_bytes" json:"dlq_max_bytes"`
	DLQDuplicates time.Duration `mapstructure:"dlq_duplicates" json:"dlq_duplicates"`
	// Limits bound each sample (see DefaultLimits).
	Limits Limits `mapstructure:"limits" json:"limits"`
}

// WithDefaults returns o with every zero field set to its default.
func (o StreamOptions) WithDefaults() StreamOptions {
	if o.Name == "" {
		o.Name = DefaultStreamName
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if len(o.Domains) == 0 {
		o.Domains = DefaultDomains()
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Duplicates <= 0 {
		o.Duplicates = DefaultDuplicates
	}
	if o.DLQName == "" {
		o.DLQName = DefaultDLQName
	}
	if o.DLQPrefix == "" {
		o.DLQPrefix = DefaultDLQPrefix
	}
	if o.DLQMaxAge <= 0 {
		o.DLQMaxAge = DefaultDLQMaxAge
	}
	if o.DLQMaxBytes <= 0 {
		o.DLQMaxBytes = DefaultDLQMaxBytes
	}
	if o.DLQDuplicates <= 0 {
		o.DLQDuplicates = DefaultDLQDuplicates
	}
	o.Limits = o.Limits.withDefaults()
	return o
}

// Validate reports a configuration that cannot work.
func (o StreamOptions) Validate() error {
	o = o.WithDefaults()
	for _, d := range o.Domains.Names() {
		if err := validateToken("domain", d); err != nil {
			return err
		}
	}
	if o.SubjectPrefix == o.DLQPrefix {
		return errors.New("stream options: subject_prefix and dlq_prefix must differ")
	}
	return nil
}

// Subjects returns the subject codec for these options.
func (o StreamOptions) Subjects() Subjects {
	o = o.WithDefaults()
	return Subjects{Prefix: o.SubjectPrefix, Domains: o.Domains}
}

func (o StreamOptions) ingestConfig() jetstream.StreamConfig {
	maxBytes := o.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        o.Name,
		Description: "replayd ingest log: wire samples by kind and domain",
		Subjects:    []string{o.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxBytes:    maxBytes,
		MaxAge:      o.MaxAge,
		Duplicates:  o.Duplicates,
		// Direct get lets replay read any sequence from any replica
		// without a consumer.
		AllowDirect: true,
	}
}

func (o StreamOptions) dlqConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        o.DLQName,
		Description: "replayd dead letters: rejected ingest messages, original bytes, reason headers",
		Subjects:    []string{o.DLQPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxBytes:    o.DLQMaxBytes,
		MaxAge:      o.DLQMaxAge,
		Duplicates:  o.DLQDuplicates,
		AllowDirect: true,
	}
}

// EnsureStreams creates the ingest and dead-letter streams. With update
// true an existing stream's configuration is updated to o (the daemon owns
// it); with update false an existing stream is left as it is (publishers
// must not overwrite the daemon's settings).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions, update bool) (ingest, dlq jetstream.Stream, err error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	o = o.WithDefaults()
	ensure := func(cfg jetstream.StreamConfig) (jetstream.Stream, error) {
		if update {
			s, err := js.CreateOrUpdateStream(ctx, cfg)
			if err != nil {
				return nil, fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
			}
			return s, nil
		}
		s, err := js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, cfg.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
		return s, nil
	}
	if ingest, err = ensure(o.ingestConfig()); err != nil {
		return nil, nil, err
	}
	if dlq, err = ensure(o.dlqConfig()); err != nil {
		return nil, nil, err
	}
	return ingest, dlq, nil
}

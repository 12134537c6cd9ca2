package ops

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are replayd's Prometheus metrics, on a registry of their own (no
// global registry).
type Metrics struct {
	Registry *prometheus.Registry

	TokensPerSecond  prometheus.Gauge
	StepSeconds      prometheus.Histogram
	Steps            prometheus.Counter
	TrainTokens      *prometheus.CounterVec // by bucket slot
	Loss             *prometheus.GaugeVec   // by bucket slot
	LossTotal        prometheus.Gauge
	Mixture          *prometheus.GaugeVec // realised fraction of tokens by slot
	PackingEff       prometheus.Gauge
	IngestSamples    *prometheus.CounterVec // by bucket
	DeadLetters      *prometheus.CounterVec // by reason
	BatchSeconds     prometheus.Histogram
	MixtureTarget    *prometheus.GaugeVec // the policy's proportions by slot
	PolicyFailures   prometheus.Counter
	PolicySwaps      prometheus.Counter
	EvalScore        *prometheus.GaugeVec   // by score key
	GateDecisions    *prometheus.CounterVec // by result
	Published        prometheus.Counter
	LastPublished    prometheus.Gauge
	NATSConnected    prometheus.Gauge
	CheckpointSecond prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with Go and process
// collectors.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry:        r,
		TokensPerSecond: prometheus.NewGauge(prometheus.GaugeOpts{Name: "replayd_train_tokens_per_second", Help: "Training throughput over the last step."}),
		StepSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "replayd_train_step_seconds", Help: "Wall time of one optimiser step.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		Steps:       prometheus.NewCounter(prometheus.CounterOpts{Name: "replayd_train_steps_total", Help: "Optimiser steps taken."}),
		TrainTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replayd_train_tokens_total", Help: "Target tokens trained on, by bucket and fresh/replay."}, []string{"bucket"}),
		Loss:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replayd_train_loss", Help: "Mean training loss of the last step, by bucket and fresh/replay."}, []string{"bucket"}),
		LossTotal:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "replayd_train_loss_total", Help: "Weighted training loss of the last step."}),
		Mixture:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replayd_mixture_fraction", Help: "Realised share of target tokens in the last batch, by bucket and fresh/replay."}, []string{"bucket"}),
		PackingEff:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "replayd_packing_efficiency", Help: "Non-padding tokens over all tokens in the last batch."}),
		IngestSamples: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replayd_ingest_samples_total", Help: "Valid samples read from the ingest stream, by bucket."},
			[]string{"bucket"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replayd_dead_letters_total", Help: "Rejected samples sent to the dead-letter stream, by reason."}, []string{"reason"}),
		BatchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "replayd_mixer_batch_seconds", Help: "Time to draw one batch: the policy's decide and mix calls, replay reads, packing, and any wait for data.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 12)}),
		MixtureTarget:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replayd_mixture_target", Help: "The policy's asked share of each bucket and fresh/replay for the last batch."}, []string{"bucket"}),
		PolicyFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "replayd_policy_failures_total", Help: "Policy calls that failed and fell back to the last good policy."}),
		PolicySwaps:    prometheus.NewCounter(prometheus.CounterOpts{Name: "replayd_policy_swaps_total", Help: "Live policy swaps applied."}),
		EvalScore:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replayd_eval_score", Help: "Latest evaluation scores, by score key."}, []string{"score"}),
		GateDecisions:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replayd_gate_decisions_total", Help: "Gate decisions, by result."}, []string{"result"}),
		Published:      prometheus.NewCounter(prometheus.CounterOpts{Name: "replayd_published_versions_total", Help: "Checkpoints published."}),
		LastPublished:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "replayd_last_published_step", Help: "Training step of the last published checkpoint."}),
		NATSConnected:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "replayd_nats_connected", Help: "1 while the NATS connection is up."}),
		CheckpointSecond: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "replayd_checkpoint_seconds", Help: "Time to write a training checkpoint.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
	}
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.TokensPerSecond, m.StepSeconds, m.Steps, m.TrainTokens, m.Loss, m.LossTotal, m.Mixture, m.PackingEff,
		m.IngestSamples, m.DeadLetters, m.BatchSeconds, m.MixtureTarget, m.PolicyFailures, m.PolicySwaps, m.EvalScore,
		m.GateDecisions, m.Published, m.LastPublished, m.NATSConnected, m.CheckpointSecond)
	return m
}

// Package mixer turns the stream of ingested samples into training batches:
// it hosts the WASM mixing policies (wazero), samples the mixture of four
// buckets × {fresh, replay}, reads replayed samples back from the log by
// sequence, and packs documents into fixed-length rows. See README.md.
package mixer

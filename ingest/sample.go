// Package ingest takes wire samples from NATS JetStream, validates them,
// sends rejects to the dead-letter stream and turns the rest into token
// sequences with loss masks, tagged with their bucket and log position.
package ingest

import "fmt"

// Kind is the training objective a sample feeds.
type Kind uint8

const (
	// KindDAPT is raw text trained with plain next-token loss.
	KindDAPT Kind = iota
	// KindSFT is an instruction sample trained on the answer only.
	KindSFT
)

// String returns the wire name of the kind ("dapt" or "sft").
func (k Kind) String() string {
	switch k {
	case KindDAPT:
		return "dapt"
	case KindSFT:
		return "sft"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind maps a wire name to a Kind.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "dapt":
		return KindDAPT, nil
	case "sft":
		return KindSFT, nil
	}
	return 0, fmt.Errorf("unknown kind %q (want dapt or sft)", s)
}

// Bucket is one of the four data buckets of the Joint-and-Replay recipe:
// the paper's DAPT-In, DAPT-Gen, SFT-In and SFT-Gen.
type Bucket uint8

const (
	// BucketDAPTDomain is raw domain text (DAPT-In).
	BucketDAPTDomain Bucket = iota
	// BucketDAPTGeneral is raw general text (DAPT-Gen).
	BucketDAPTGeneral
	// BucketSFTDomain is domain instruction data (SFT-In).
	BucketSFTDomain
	// BucketSFTGeneral is general instruction data (SFT-Gen).
	BucketSFTGeneral
	// NumBuckets is the number of buckets.
	NumBuckets = 4
)

var bucketNames = [NumBuckets]string{"dapt/domain", "dapt/general", "sft/domain", "sft/general"}

// String returns the bucket's name as used in config, metrics and checkpoints.
func (b Bucket) String() string {
	if int(b) < NumBuckets {
		return bucketNames[b]
	}
	return fmt.Sprintf("bucket(%d)", uint8(b))
}

// ParseBucket maps a bucket name ("dapt/domain", ...) to a Bucket.
func ParseBucket(s string) (Bucket, error) {
	for i, n := range bucketNames {
		if n == s {
			return Bucket(i), nil
		}
	}
	return 0, fmt.Errorf("unknown bucket %q (want one of %v)", s, bucketNames)
}

// BucketOf returns the bucket of a kind in the domain (general=false) or in
// general data (general=true).
func BucketOf(k Kind, general bool) Bucket {
	switch {
	case k == KindDAPT && !general:
		return BucketDAPTDomain
	case k == KindDAPT:
		return BucketDAPTGeneral
	case !general:
		return BucketSFTDomain
	default:
		return BucketSFTGeneral
	}
}

// Sample is a validated, tokenized sample ready for the mixer.
type Sample struct {
	// ID is the producer's id (Nats-Msg-Id), or a content hash.
	ID string
	// Seq is the sample's sequence in the ingest stream: its log position.
	Seq uint64
	// Kind is DAPT or SFT.
	Kind Kind
	// Domain is the domain name from the subject ("fin", "gen", ...).
	Domain string
	// Bucket is the bucket the sample belongs to before any policy decision.
	Bucket Bucket
	// Task is the optional task name of an SFT sample.
	Task string
	// Tokens are the token ids, template included.
	Tokens []int32
	// LossMask has one entry per token: 1 where the token is a training
	// target (answer tokens of SFT, every token of DAPT), 0 otherwise.
	LossMask []uint8
	// Bytes is the size of the original message.
	Bytes int
	// Meta is the producer's optional string map.
	Meta map[string]string
}

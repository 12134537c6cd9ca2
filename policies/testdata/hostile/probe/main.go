//go:build wasip1

// Command probe tries to reach out of the sandbox at init and reports what
// it saw through its decisions: the weight of the sample with seq k is
// observation k.
//
//	seq 1  1 if the root directory or /etc/passwd could be read, else 0
//	seq 2  number of environment variables
//	seq 3  wall-clock year − 2000
//	seq 4  number of command-line arguments
//	seq 5  the first random u64 from crypto/rand, mod 1000
//	seq 6  1 if a TCP-style dial to 127.0.0.1:4222 worked, else 0
package main

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"os"
	"time"

	"replayd/policies/abi"
	"replayd/policies/sdk"
)

type probe struct{ seen [7]float32 }

func (p *probe) Init([]byte) error {
	if _, err := os.ReadDir("/"); err == nil {
		p.seen[1] = 1
	}
	if _, err := os.ReadFile("/etc/passwd"); err == nil {
		p.seen[1] = 1
	}
	p.seen[2] = float32(len(os.Environ()))
	p.seen[3] = float32(time.Now().Year() - 2000)
	p.seen[4] = float32(len(os.Args))
	var b [8]byte
	if _, err := rand.Read(b[:]); err == nil {
		p.seen[5] = float32(binary.LittleEndian.Uint64(b[:]) % 1000)
	}
	if c, err := net.Dial("tcp", "127.0.0.1:4222"); err == nil {
		c.Close()
		p.seen[6] = 1
	}
	return nil
}

func (p *probe) Decide(_ *abi.DecideHeader, s *abi.SampleMeta) abi.Decision {
	d := abi.Decision{Bucket: s.Bucket, Weight: 0, ReplayWeight: 1}
	if s.Seq < uint64(len(p.seen)) {
		d.Weight = p.seen[s.Seq]
	}
	return d
}

func (p *probe) Mix(*abi.MixInput) [abi.NumSlots]float32 { return [abi.NumSlots]float32{1} }

func init() { sdk.Register(&probe{}) }

func main() {}

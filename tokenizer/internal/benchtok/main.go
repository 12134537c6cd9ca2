// Command benchtok measures encoding throughput of replayd's tokenizer
// against tiktoken-go on the same text (the held-out shared data) and the
// same GPT-2 (r50k_base) vocabulary. scripts/bench-tokenizer.sh runs it;
// the last line is
//
//	bench-tokenizer ours_mb_s=… tiktoken_mb_s=… ratio=… ours_2cores_mb_s=…
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"

	"replayd/tokenizer"
)

func main() {
	data := flag.String("data", "../shared/data", "shared data folder")
	minDur := flag.Duration("min", 3*time.Second, "minimum duration of each measurement")
	flag.Parse()
	if err := run(*data, *minDur); err != nil {
		fmt.Fprintln(os.Stderr, "bench-tokenizer:", err)
		os.Exit(1)
	}
}

func readTexts(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var row struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, row.Text)
	}
	return out, sc.Err()
}

// measure runs pass until minDur has elapsed (at least twice) and returns
// MB/s over the passes.
func measure(nbytes int, minDur time.Duration, pass func()) float64 {
	pass() // warm-up: page in code and data
	start := time.Now()
	n := 0
	for n < 2 || time.Since(start) < minDur {
		pass()
		n++
	}
	return float64(nbytes*n) / 1e6 / time.Since(start).Seconds()
}

func run(data string, minDur time.Duration) error {
	var texts []string
	nbytes := 0
	for _, rel := range []string{"finance_raw/reuters21578_val.jsonl", "general_raw/wikipedia_en_val.jsonl"} {
		t, err := readTexts(filepath.Join(data, rel))
		if err != nil {
			return err
		}
		texts = append(texts, t...)
	}
	for _, s := range texts {
		nbytes += len(s)
	}
	loader := tiktoken_loader.NewOfflineLoader()
	tiktoken.SetBpeLoader(loader)
	tik, err := tiktoken.GetEncoding("r50k_base")
	if err != nil {
		return err
	}
	ranks, err := loader.LoadTiktokenBpe("r50k_base.tiktoken")
	if err != nil {
		return err
	}
	load := func() (*tokenizer.Tokenizer, error) {
		built, err := tokenizer.FromRanks(ranks, map[string]int{"<|endoftext|>": 50256}, tokenizer.StyleGPT2)
		if err != nil {
			return nil, err
		}
		js, err := built.MarshalJSON()
		if err != nil {
			return nil, err
		}
		return tokenizer.FromJSON(js)
	}
	ours, err := load()
	if err != nil {
		return err
	}
	// The comparison only means something if the ids agree.
	for i, s := range texts {
		a, b := ours.EncodeOrdinary(s), tik.EncodeOrdinary(s)
		if len(a) != len(b) {
			return fmt.Errorf("text %d: %d ids, tiktoken %d", i, len(a), len(b))
		}
		for j := range a {
			if int(a[j]) != b[j] {
				return fmt.Errorf("text %d: id %d differs from tiktoken", i, j)
			}
		}
	}
	// Cold: a fresh tokenizer, one pass, empty word cache.
	cold, err := load()
	if err != nil {
		return err
	}
	t0 := time.Now()
	for _, s := range texts {
		cold.EncodeOrdinary(s)
	}
	coldMBs := float64(nbytes) / 1e6 / time.Since(t0).Seconds()

	tikMBs := measure(nbytes, minDur, func() {
		for _, s := range texts {
			tik.EncodeOrdinary(s)
		}
	})
	oursMBs := measure(nbytes, minDur, func() {
		for _, s := range texts {
			ours.EncodeOrdinary(s)
		}
	})
	two := measure(nbytes, minDur, func() { ours.EncodeBatch(texts, 2) })
	fmt.Printf("text: %d documents, %.2f MB (held-out Reuters + Wikipedia); GOMAXPROCS=%d NumCPU=%d\n",
		len(texts), float64(nbytes)/1e6, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Printf("ours cold (first pass, empty cache) %.2f MB/s\n", coldMBs)
	fmt.Printf("bench-tokenizer ours_mb_s=%.2f tiktoken_mb_s=%.2f ratio=%.2f ours_2cores_mb_s=%.2f\n",
		oursMBs, tikMBs, oursMBs/tikMBs, two)
	return nil
}

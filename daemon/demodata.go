package daemon

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// The demo's data is synthetic, generated here from templates: finance news
// with earnings figures, sentiment questions about such sentences, general
// encyclopedic text and general questions. It has the layout of
// ../shared/data so `replayd demo --data DIR` can swap in real JSONL.

var (
	demoCompanies = []string{"Northwind Corp", "Acme Holdings", "Globex Inc", "Initech", "Umbrella Group", "Stark Industries",
		"Wayne Enterprises", "Cyberdyne Systems", "Soylent Co", "Tyrell Corp", "Vandelay Imports", "Hooli", "Pied Piper",
		"Massive Dynamic", "Oscorp", "Wonka Industries", "Gringotts Bank", "Monarch Mining", "Blue Sun Energy", "Aperture Labs"}
	demoMetrics = []string{"net profit", "operating profit", "sales", "revenue", "net income", "earnings per share"}
	demoPeriods = []string{"first quarter", "second quarter", "third quarter", "fourth quarter", "first half", "full year"}
	demoUp      = []string{"rose", "increased", "climbed", "jumped", "grew"}
	demoDown    = []string{"fell", "decreased", "dropped", "declined", "slumped"}
	demoFlat    = []string{"was unchanged", "was flat", "held steady"}
	demoAnimals = []string{"red fox", "grey wolf", "barn owl", "river otter", "snow leopard", "koala", "bison", "heron",
		"salmon", "honey bee", "orca", "penguin", "tortoise", "moose", "hedgehog", "falcon"}
	demoRegions = []string{"northern Europe", "central Asia", "the Andes", "eastern Australia", "the Great Plains",
		"the Arctic", "West Africa", "the Amazon basin", "southern Chile", "Scandinavia"}
	demoFoods   = []string{"insects", "fish", "small mammals", "grasses", "berries", "leaves", "seeds", "nectar"}
	demoCountry = [][2]string{{"France", "Paris"}, {"Japan", "Tokyo"}, {"Kenya", "Nairobi"}, {"Peru", "Lima"},
		{"Canada", "Ottawa"}, {"Egypt", "Cairo"}, {"Norway", "Oslo"}, {"Chile", "Santiago"}, {"India", "New Delhi"},
		{"Italy", "Rome"}, {"Spain", "Madrid"}, {"Ghana", "Accra"}}
)

const demoSentimentInstruction = "What is the sentiment of the following financial news sentence from the perspective of an investor? Answer with one word: negative, neutral, or positive."

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func demoAmount(r *rand.Rand) string { return fmt.Sprintf("%.1f mln dlrs", 1+r.Float64()*400) }

// demoSentence returns a finance sentence and its sentiment label.
func demoSentence(r *rand.Rand) (string, string) {
	c, m, p := pick(r, demoCompanies), pick(r, demoMetrics), pick(r, demoPeriods)
	switch r.IntN(3) {
	case 0:
		return fmt.Sprintf("%s said %s %s %s %d pct to %s in the %s .", c, m, pick(r, demoUp), "by", 1+r.IntN(60), demoAmount(r), p), "positive"
	case 1:
		return fmt.Sprintf("%s said %s %s %s %d pct to %s in the %s .", c, m, pick(r, demoDown), "by", 1+r.IntN(60), demoAmount(r), p), "negative"
	}
	return fmt.Sprintf("%s said %s %s at %s in the %s .", c, m, pick(r, demoFlat), demoAmount(r), p), "neutral"
}

func demoNews(r *rand.Rand) string {
	c := pick(r, demoCompanies)
	var b strings.Builder
	fmt.Fprintf(&b, "%s REPORTS %s RESULTS\n\nNEW YORK - ", strings.ToUpper(c), strings.ToUpper(pick(r, demoPeriods)))
	for i := 0; i < 3+r.IntN(4); i++ {
		s, _ := demoSentence(r)
		b.WriteString(s + " ")
	}
	fmt.Fprintf(&b, "The company said it expects %s to %s next year, citing demand in %s .", pick(r, demoMetrics), pick(r, append(append([]string{}, demoUp...), demoDown...)), pick(r, demoRegions))
	return strings.TrimSpace(strings.ReplaceAll(b.String(), " by ", " "))
}

func demoArticle(r *rand.Rand) string {
	a := pick(r, demoAnimals)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nThe %s is an animal found in %s. ", strings.ToUpper(a[:1])+a[1:], a, pick(r, demoRegions))
	for i := 0; i < 3+r.IntN(4); i++ {
		switch r.IntN(3) {
		case 0:
			fmt.Fprintf(&b, "It feeds mainly on %s and sometimes on %s. ", pick(r, demoFoods), pick(r, demoFoods))
		case 1:
			fmt.Fprintf(&b, "Adults weigh about %d kilograms and live up to %d years. ", 1+r.IntN(300), 2+r.IntN(40))
		default:
			fmt.Fprintf(&b, "Populations in %s have been studied since %d. ", pick(r, demoRegions), 1850+r.IntN(170))
		}
	}
	return strings.TrimSpace(b.String())
}

func demoGeneralQA(r *rand.Rand) (string, string, string) {
	if r.IntN(2) == 0 {
		c := pick(r, demoCountry)
		return "What is the capital of " + c[0] + "?", "", c[1] + "."
	}
	x, y := r.IntN(50), r.IntN(50)
	return fmt.Sprintf("What is %d plus %d?", x, y), "", fmt.Sprintf("%d plus %d is %d.", x, y, x+y)
}

func demoYesNo(r *rand.Rand) (string, string, string) {
	x, y := r.IntN(100), r.IntN(100)
	ans := "no"
	if x > y {
		ans = "yes"
	}
	return "Read the passage and answer the question with yes or no.",
		fmt.Sprintf("Passage: The first number is %d and the second number is %d.\nQuestion: Is the first number larger than the second?", x, y), ans
}

// WriteDemoData writes the synthetic demo data set under dir in the layout of
// ../shared/data and returns the files it wrote.
func WriteDemoData(dir string, seed uint64) ([]string, error) {
	r := rand.New(rand.NewPCG(seed, 0xdeb0))
	type row = map[string]any
	files := map[string][]row{}
	add := func(name string, n int, gen func(i int) row) {
		for i := 0; i < n; i++ {
			files[name] = append(files[name], gen(i))
		}
	}
	add("finance_raw/demo_news_train.jsonl", 1500, func(i int) row { return row{"id": fmt.Sprintf("news-%d", i), "text": demoNews(r)} })
	add("finance_raw/demo_news_val.jsonl", 48, func(i int) row { return row{"id": fmt.Sprintf("news-val-%d", i), "text": demoNews(r)} })
	sent := func(prefix string) func(i int) row {
		return func(i int) row {
			s, l := demoSentence(r)
			return row{"id": fmt.Sprintf("%s-%d", prefix, i), "instruction": demoSentimentInstruction, "input": s, "output": l, "task": "demo_sentiment"}
		}
	}
	add("finance_sft/demo_sentiment_train.jsonl", 1500, sent("sent"))
	add("finance_sft/demo_sentiment_test.jsonl", 60, sent("sent-test"))
	add("general_raw/demo_wiki_train.jsonl", 800, func(i int) row { return row{"id": fmt.Sprintf("wiki-%d", i), "text": demoArticle(r)} })
	add("general_raw/demo_wiki_val.jsonl", 32, func(i int) row { return row{"id": fmt.Sprintf("wiki-val-%d", i), "text": demoArticle(r)} })
	add("general_sft/demo_qa_train.jsonl", 800, func(i int) row {
		in, inp, out := demoGeneralQA(r)
		return row{"id": fmt.Sprintf("qa-%d", i), "instruction": in, "input": inp, "output": out}
	})
	add("general_eval/demo_yesno_dev.jsonl", 60, func(i int) row {
		in, inp, out := demoYesNo(r)
		return row{"id": fmt.Sprintf("yn-%d", i), "instruction": in, "input": inp, "output": out, "task": "demo_yesno"}
	})
	var written []string
	for name, rows := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("demo data: %w", err)
		}
		var b strings.Builder
		for _, rw := range rows {
			raw, err := json.Marshal(rw)
			if err != nil {
				return nil, err
			}
			b.Write(raw)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			return nil, fmt.Errorf("demo data: %w", err)
		}
		written = append(written, path)
	}
	return written, nil
}

package experiment

import (
	"encoding/csv"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Row is one variant's aggregate over seeds.
type Row struct {
	Variant     string
	Description string
	Seeds       int
	// Mean and Std per score key (Std is the sample standard deviation,
	// 0 with one seed).
	Mean, Std map[string]float64
	// Tokens is the mean number of trained target positions.
	Tokens float64
	// TrainLoss is the mean final training loss.
	TrainLoss float64
}

// Aggregate groups runs by variant, in first-seen order, and computes
// mean and standard deviation of every score present in all its runs.
func Aggregate(f *File, runs []RunResult) []Row {
	desc := map[string]string{BaseRow: "base checkpoint, not post-trained"}
	for _, v := range f.Variants {
		desc[v.Name] = v.Description
	}
	var order []string
	by := map[string][]RunResult{}
	for _, r := range runs {
		if _, ok := by[r.Variant]; !ok {
			order = append(order, r.Variant)
		}
		by[r.Variant] = append(by[r.Variant], r)
	}
	var rows []Row
	for _, name := range order {
		rs := by[name]
		row := Row{Variant: name, Description: desc[name], Seeds: len(rs), Mean: map[string]float64{}, Std: map[string]float64{}}
		for k := range rs[0].Scores {
			vals := make([]float64, 0, len(rs))
			for _, r := range rs {
				if v, ok := r.Scores[k]; ok {
					vals = append(vals, v)
				}
			}
			if len(vals) != len(rs) {
				continue
			}
			row.Mean[k], row.Std[k] = meanStd(vals)
		}
		var tok, loss []float64
		for _, r := range rs {
			tok = append(tok, float64(r.Train.Tokens))
			loss = append(loss, r.Train.FinalLoss)
		}
		row.Tokens, _ = meanStd(tok)
		row.TrainLoss, _ = meanStd(loss)
		rows = append(rows, row)
	}
	return rows
}

func meanStd(v []float64) (mean, std float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)-1))
}

// columns returns the score keys to show: the configured ones, else every
// group score (no '/' or "loss/...") and every suite score.
func columns(f *File, rows []Row) []string {
	if len(f.Eval.Columns) > 0 {
		return f.Eval.Columns
	}
	return scoreKeys(rows)
}

// scoreKeys is every score key of rows, sorted.
func scoreKeys(rows []Row) []string {
	set := map[string]bool{}
	for _, r := range rows {
		for k := range r.Mean {
			set[k] = true
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// lowerIsBetter: losses and perplexities.
func lowerIsBetter(key string) bool {
	return strings.Contains(key, "loss") || strings.Contains(key, "perplexity")
}

func summary(s map[string]float64, cols []string) string {
	if len(cols) == 0 {
		for k := range s {
			cols = append(cols, k)
		}
		sort.Strings(cols)
	}
	var b strings.Builder
	for _, k := range cols {
		if v, ok := s[k]; ok {
			fmt.Fprintf(&b, "%s=%.4g ", k, v)
		}
	}
	return strings.TrimSpace(b.String())
}

func fmtCell(mean, std float64, seeds int) string {
	if seeds < 2 {
		return fmt.Sprintf("%.3f", mean)
	}
	return fmt.Sprintf("%.3f ± %.3f", mean, std)
}

// Markdown renders the table: one row per variant, mean ± std per column.
func Markdown(f *File, rows []Row) string {
	cols := columns(f, rows)
	var b strings.Builder
	b.WriteString("| variant | seeds | trained tokens | train loss |")
	for _, c := range cols {
		arrow := "↑"
		if lowerIsBetter(c) {
			arrow = "↓"
		}
		fmt.Fprintf(&b, " %s %s |", c, arrow)
	}
	b.WriteString("\n| --- | ---: | ---: | ---: |")
	for range cols {
		b.WriteString(" ---: |")
	}
	b.WriteString("\n")
	for _, r := range rows {
		tok, loss := "—", "—"
		if r.Variant != BaseRow {
			tok, loss = fmt.Sprintf("%.0f", r.Tokens), fmt.Sprintf("%.3f", r.TrainLoss)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s |", r.Variant, r.Seeds, tok, loss)
		for _, c := range cols {
			if m, ok := r.Mean[c]; ok {
				fmt.Fprintf(&b, " %s |", fmtCell(m, r.Std[c], r.Seeds))
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// WriteReport writes table.md, results.csv and one SVG bar chart per
// column into f.Out.
func WriteReport(f *File, runs []RunResult, command string) error {
	rows := Aggregate(f, runs)
	cols := columns(f, rows)
	var md strings.Builder
	fmt.Fprintf(&md, "# %s\n\n", f.Name)
	if command != "" {
		fmt.Fprintf(&md, "Command: `%s`\n\n", command)
	}
	fmt.Fprintf(&md, "Base `%s`; seeds %v; budget %d steps × %d × %d positions per run.\n\n", f.Base, f.Seeds, f.Train.Steps, f.Train.Batch, f.Train.SeqLen)
	md.WriteString(Markdown(f, rows))
	md.WriteString("\nVariants:\n\n")
	for _, r := range rows {
		if r.Description != "" {
			fmt.Fprintf(&md, "- `%s`: %s\n", r.Variant, r.Description)
		}
	}
	md.WriteString("\nPlots:\n\n")
	for _, c := range cols {
		fmt.Fprintf(&md, "![%s](%s)\n", c, plotName(c))
	}
	if err := os.WriteFile(filepath.Join(f.Out, "table.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	if err := writeCSV(filepath.Join(f.Out, "results.csv"), rows); err != nil {
		return err
	}
	for _, c := range cols {
		svg := BarChart(c, rows)
		if err := os.WriteFile(filepath.Join(f.Out, plotName(c)), []byte(svg), 0o644); err != nil {
			return fmt.Errorf("experiment: %w", err)
		}
	}
	return nil
}

func plotName(col string) string {
	return "plot_" + strings.NewReplacer("/", "_", " ", "_", "@", "_").Replace(col) + ".svg"
}

// writeCSV writes every score key (not only the table's columns): variant,
// description, seeds, tokens, train_loss, then key_mean and key_std.
func writeCSV(path string, rows []Row) error {
	keys := scoreKeys(rows)
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	w := csv.NewWriter(fh)
	head := []string{"variant", "description", "seeds", "tokens", "train_loss"}
	for _, k := range keys {
		head = append(head, k+"_mean", k+"_std")
	}
	w.Write(head)
	ff := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, r := range rows {
		rec := []string{r.Variant, r.Description, strconv.Itoa(r.Seeds), ff(r.Tokens), ff(r.TrainLoss)}
		for _, k := range keys {
			if m, ok := r.Mean[k]; ok {
				rec = append(rec, ff(m), ff(r.Std[k]))
			} else {
				rec = append(rec, "", "")
			}
		}
		w.Write(rec)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		fh.Close()
		return fmt.Errorf("experiment: write %s: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("experiment: write %s: %w", path, err)
	}
	return nil
}

// BarChart draws one column as an SVG bar chart: a bar per variant at its
// mean with a ±std error bar, the base as a dashed reference line.
func BarChart(col string, rows []Row) string {
	type bar struct {
		name      string
		mean, std float64
	}
	var bars []bar
	baseVal, hasBase := 0.0, false
	for _, r := range rows {
		m, ok := r.Mean[col]
		if !ok {
			continue
		}
		if r.Variant == BaseRow {
			baseVal, hasBase = m, true
		}
		bars = append(bars, bar{r.Variant, m, r.Std[col]})
	}
	const (
		barW, gap       = 36.0, 14.0
		left, top       = 60.0, 40.0
		plotH, bottom   = 240.0, 130.0
		minW            = 320.0
		fontSize        = 11
		titleFontSize   = 14
		gridlines       = 5
		headroom        = 1.1
		labelRotation   = -45
		labelOffset     = 8.0
		errorCapHalfW   = 6.0
		baseLineDashing = "5,4"
	)
	width := math.Max(minW, left+float64(len(bars))*(barW+gap)+gap+20)
	height := top + plotH + bottom
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, b := range bars {
		hi = math.Max(hi, b.mean+b.std)
		lo = math.Min(lo, b.mean-b.std)
	}
	span := hi - lo
	if span == 0 {
		span = math.Max(math.Abs(hi), 1)
	}
	// Bars start at 0 unless every value is far from it (losses of 4-6
	// nats): then the axis is zoomed so the differences show; the axis
	// labels say where it starts.
	if lo >= 0 && lo < 2*span {
		lo = 0
	} else {
		lo -= 0.25 * span
	}
	hi += (headroom - 1) * (hi - lo)
	y := func(v float64) float64 { return top + plotH*(hi-v)/(hi-lo) }
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="%d">`+"\n", width, height, fontSize)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	dir := "higher is better"
	if lowerIsBetter(col) {
		dir = "lower is better"
	}
	fmt.Fprintf(&s, `<text x="%.0f" y="22" font-size="%d" font-weight="bold">%s (%s; mean ± std over seeds)</text>`+"\n", left, titleFontSize, html.EscapeString(col), dir)
	for i := 0; i <= gridlines; i++ {
		v := lo + (hi-lo)*float64(i)/gridlines
		fmt.Fprintf(&s, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, width-10, y(v), y(v))
		fmt.Fprintf(&s, `<text x="%.0f" y="%.1f" text-anchor="end">%.3g</text>`+"\n", left-4, y(v)+4, v)
	}
	for i, b := range bars {
		x := left + gap + float64(i)*(barW+gap)
		floor := math.Max(lo, math.Min(0, hi))
		y0, y1 := y(math.Max(b.mean, floor)), y(math.Min(b.mean, floor))
		fill := "#4878a8"
		if b.name == BaseRow {
			fill = "#999"
		}
		fmt.Fprintf(&s, `<rect x="%.1f" y="%.1f" width="%.0f" height="%.1f" fill="%s"><title>%s: %.4g ± %.4g</title></rect>`+"\n",
			x, y0, barW, math.Max(y1-y0, 0.5), fill, html.EscapeString(b.name), b.mean, b.std)
		if b.std > 0 {
			cx := x + barW/2
			fmt.Fprintf(&s, `<path d="M%.1f %.1f V%.1f M%.1f %.1f H%.1f M%.1f %.1f H%.1f" stroke="black"/>`+"\n",
				cx, y(b.mean-b.std), y(b.mean+b.std), cx-errorCapHalfW, y(b.mean-b.std), cx+errorCapHalfW, cx-errorCapHalfW, y(b.mean+b.std), cx+errorCapHalfW)
		}
		fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%.3g</text>`+"\n", x+barW/2, y(b.mean+b.std)-3, b.mean)
		lx, ly := x+barW/2, top+plotH+labelOffset
		fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" text-anchor="end" transform="rotate(%d %.1f %.1f)">%s</text>`+"\n", lx, ly, labelRotation, lx, ly, html.EscapeString(b.name))
	}
	if hasBase {
		fmt.Fprintf(&s, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#c44" stroke-dasharray="%s"/>`+"\n", left, width-10, y(baseVal), y(baseVal), baseLineDashing)
	}
	fmt.Fprintf(&s, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, width-10, y(lo), y(lo))
	s.WriteString("</svg>\n")
	return s.String()
}

package ops

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
)

// Series is one named line of a chart.
type Series struct {
	Name string
	X, Y []float64
}

// Marker is a point drawn on a chart (an evaluation's gate decision).
type Marker struct {
	X, Y  float64
	Pass  bool
	Label string
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// LineChart renders series as an SVG line chart with axes and a legend.
func LineChart(title string, series []Series, markers []Marker, w, h int) template.HTML {
	const left, right, top, bottom = 56, 150, 28, 32
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	n := 0
	grow := func(x, y float64) {
		if math.IsNaN(y) || math.IsInf(y, 0) {
			return
		}
		minX, maxX = math.Min(minX, x), math.Max(maxX, x)
		minY, maxY = math.Min(minY, y), math.Max(maxY, y)
		n++
	}
	for _, s := range series {
		for i := range s.X {
			grow(s.X[i], s.Y[i])
		}
	}
	for _, m := range markers {
		grow(m.X, m.Y)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="%d" height="%d" viewBox="0 0 %d %d">`, w, h, w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14" font-weight="bold">%s</text>`, left, template.HTMLEscapeString(title))
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#888">no data yet</text></svg>`, left, top+int(ph/2))
		return template.HTML(b.String())
	}
	if maxX == minX {
		maxX = minX + 1
	}
	if maxY == minY {
		maxY, minY = maxY+0.5, minY-0.5
	}
	pad := (maxY - minY) * 0.05
	minY, maxY = minY-pad, maxY+pad
	px := func(x float64) float64 { return float64(left) + (x-minX)/(maxX-minX)*pw }
	py := func(y float64) float64 { return float64(top) + (maxY-y)/(maxY-minY)*ph }
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#ccc"/>`, left, top, pw, ph)
	for i := 0; i <= 4; i++ {
		y := minY + (maxY-minY)*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" font-size="10" text-anchor="end">%s</text>`,
			left, float64(left)+pw, py(y), py(y), left-4, py(y)+3, fmtTick(y))
		x := minX + (maxX-minX)*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%s</text>`, px(x), h-bottom+14, fmtTick(x))
	}
	for i, s := range series {
		color := palette[i%len(palette)]
		var pts []string
		for j := range s.X {
			if math.IsNaN(s.Y[j]) || math.IsInf(s.Y[j], 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[j]), py(s.Y[j])))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline class="series" fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" font-size="11">%s</text>`,
			w-right+8, top+i*16, color, w-right+22, top+i*16+9, template.HTMLEscapeString(s.Name))
	}
	for _, m := range markers {
		color, shape := "#2ca02c", "circle"
		if !m.Pass {
			color, shape = "#d62728", "cross"
		}
		x, y := px(m.X), py(m.Y)
		if shape == "circle" {
			fmt.Fprintf(&b, `<circle class="marker pass" cx="%.1f" cy="%.1f" r="5" fill="%s"><title>%s</title></circle>`, x, y, color, template.HTMLEscapeString(m.Label))
		} else {
			fmt.Fprintf(&b, `<path class="marker fail" d="M%.1f %.1fl8 8m0 -8l-8 8" stroke="%s" stroke-width="2"><title>%s</title></path>`, x-4, y-4, color, template.HTMLEscapeString(m.Label))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func fmtTick(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// seriesSet collects named series point by point.
type seriesSet map[string]*Series

func (m seriesSet) add(name string, x, y float64) {
	s := m[name]
	if s == nil {
		s = &Series{Name: name}
		m[name] = s
	}
	s.X = append(s.X, x)
	s.Y = append(s.Y, y)
}

// sorted returns the series in name order.
func (m seriesSet) sorted() []Series {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Series, 0, len(names))
	for _, n := range names {
		out = append(out, *m[n])
	}
	return out
}

// lossSeries turns loss history into one series per bucket plus the total.
func lossSeries(loss []LossPoint) []Series {
	total, buckets := seriesSet{}, seriesSet{}
	for _, p := range loss {
		total.add("all", float64(p.Step), p.Loss)
		for name, v := range p.Buckets {
			buckets.add(name, float64(p.Step), v)
		}
	}
	return append(total.sorted(), buckets.sorted()...)
}

func mixSeries(mix []MixPoint) []Series {
	set := seriesSet{}
	for _, p := range mix {
		for name, v := range p.Fractions {
			set.add(name, float64(p.Step), v)
		}
	}
	return set.sorted()
}

// evalCharts draws one chart of group scores (points) and one of held-out
// losses, each evaluation marked pass or fail.
func evalCharts(evals []EvalPoint) (template.HTML, template.HTML) {
	scores, losses := seriesSet{}, seriesSet{}
	var mScore, mLoss []Marker
	for _, e := range evals {
		for k, v := range e.Scores {
			if strings.Contains(k, "/") && !strings.HasPrefix(k, "loss/") {
				continue // per-suite scores stay in the table
			}
			into := scores
			if strings.HasPrefix(k, "loss/") {
				into = losses
			}
			into.add(k, float64(e.Step), v)
		}
		label := fmt.Sprintf("step %d: %s", e.Step, verdict(e))
		if v, ok := firstScore(e.Scores, false); ok {
			mScore = append(mScore, Marker{X: float64(e.Step), Y: v, Pass: e.Pass || e.Baseline, Label: label})
		}
		if v, ok := firstScore(e.Scores, true); ok {
			mLoss = append(mLoss, Marker{X: float64(e.Step), Y: v, Pass: e.Pass || e.Baseline, Label: label})
		}
	}
	return LineChart("Evaluation: task groups (points)", scores.sorted(), mScore, 900, 260),
		LineChart("Evaluation: held-out loss", losses.sorted(), mLoss, 900, 260)
}

func firstScore(scores map[string]float64, loss bool) (float64, bool) {
	keys := make([]string, 0, len(scores))
	for k := range scores {
		if strings.HasPrefix(k, "loss/") == loss && (loss || !strings.Contains(k, "/")) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return 0, false
	}
	sort.Strings(keys)
	return scores[keys[0]], true
}

func verdict(e EvalPoint) string {
	switch {
	case e.Baseline:
		return "baseline"
	case e.Published != "":
		return "published " + e.Published
	case e.Pass:
		return "passed"
	}
	return "rejected: " + strings.Join(e.Reasons, "; ")
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{"verdict": verdict}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>replayd</title>
<meta http-equiv="refresh" content="10">
<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}.k{color:#666}.fail{color:#d62728}.pass{color:#2ca02c}</style>
</head><body>
<h1>replayd</h1>
<p><span class="k">phase</span> {{.S.Phase}} · <span class="k">step</span> {{.S.Step}} · <span class="k">tokens</span> {{.S.Tokens}} ·
<span class="k">tokens/s</span> {{printf "%.0f" .S.TokensPerSec}} · <span class="k">log position</span> {{.S.LogPosition}} ·
<span class="k">model</span> {{.S.Model}} · <span class="k">policy</span> {{.S.Policy.Name}} <code>{{printf "%.12s" .S.Policy.Hash}}</code> since step {{.S.Policy.Since}}</p>
{{.Loss}}
{{.Mix}}
{{.Scores}}
{{.Losses}}
<h2>Evaluations</h2>
<table><tr><th>step</th><th>time</th><th>decision</th></tr>
{{range .EvalsDesc}}<tr><td>{{.Step}}</td><td>{{.Time.Format "15:04:05"}}</td><td class="{{if or .Pass .Baseline}}pass{{else}}fail{{end}}">{{verdict .}}</td></tr>{{end}}
</table>
<h2>Published versions</h2>
<table><tr><th>version</th><th>step</th><th>time</th></tr>
{{range .S.Published}}<tr><td><a href="/checkpoints/{{.Version}}/config.json">{{.Version}}</a></td><td>{{.Step}}</td><td>{{.Time.Format "2006-01-02 15:04:05"}}</td></tr>{{end}}
</table>
<h2>Policies</h2>
<table><tr><th>name</th><th>hash</th><th>since step</th></tr>
{{range .S.Policies}}<tr><td>{{.Name}}</td><td><code>{{printf "%.16s" .Hash}}</code></td><td>{{.Since}}</td></tr>{{end}}
</table>
<p class="k"><a href="/status">/status</a> · <a href="/metrics">/metrics</a> · <a href="/checkpoints/">/checkpoints/</a></p>
</body></html>`))

type pageData struct {
	S                         Snapshot
	Loss, Mix, Scores, Losses template.HTML
	EvalsDesc                 []EvalPoint
}

func renderPage(s Snapshot) pageData {
	d := pageData{S: s}
	d.Loss = LineChart("Training loss by bucket", lossSeries(s.Loss), nil, 900, 260)
	d.Mix = LineChart("Realised mixture (share of target tokens)", mixSeries(s.Mixture), nil, 900, 260)
	d.Scores, d.Losses = evalCharts(s.Evals)
	for i := len(s.Evals) - 1; i >= 0; i-- {
		d.EvalsDesc = append(d.EvalsDesc, s.Evals[i])
	}
	return d
}

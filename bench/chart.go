package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"strings"
)

// barChart is a grouped bar chart: one group per category on the x axis,
// one bar per series in each group, every bar labelled with its value.
type barChart struct {
	Title    string
	Subtitle string
	YLabel   string
	Groups   []string
	Series   []string
	// Values[g][s] is the height of series s in group g; NaN leaves the
	// bar out.
	Values [][]float64
	// Labels[g][s] is written above the bar; lines split on "\n".
	Labels [][]string
	// Tick formats the y axis' tick values.
	Tick func(float64) string
	// ClipAt, if positive, bounds the y axis: a taller bar is drawn to the
	// top with a break mark, its label still giving its value.
	ClipAt float64
}

// seriesColors are distinguishable in colour and in grey scale: the
// baseline grey, then ever darker.
var seriesColors = []string{"#9e9e9e", "#6baed6", "#2171b5", "#08306b"}

// SVG renders the chart.
func (c *barChart) SVG() []byte {
	const (
		width, height                  = 960.0, 516.0
		left, right, top, bottom       = 84.0, 24.0, 112.0, 56.0
		groupPad, barGap, labelLineGap = 0.18, 3.0, 12.0
	)
	plotW, plotH := width-left-right, height-top-bottom
	maxV := 0.0
	for _, g := range c.Values {
		for _, v := range g {
			if !math.IsNaN(v) {
				maxV = max(maxV, v)
			}
		}
	}
	if c.ClipAt > 0 {
		maxV = min(maxV, c.ClipAt)
	}
	step := niceStep(maxV * 1.18 / 5)
	yMax := step * math.Ceil(maxV*1.18/step)
	if yMax == 0 {
		yMax, step = 1, 0.2
	}
	y := func(v float64) float64 { return top + plotH - v/yMax*plotH }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="28" font-size="19" font-weight="bold" fill="#222">%s</text>`+"\n", left, esc(c.Title))
	if c.Subtitle != "" {
		fmt.Fprintf(&b, `<text x="%.0f" y="50" font-size="13" fill="#555">%s</text>`+"\n", left, esc(c.Subtitle))
	}
	// Legend.
	lx := left
	for i, s := range c.Series {
		fmt.Fprintf(&b, `<rect x="%.1f" y="64" width="14" height="14" fill="%s"/>`, lx, seriesColors[i%len(seriesColors)])
		fmt.Fprintf(&b, `<text x="%.1f" y="76" font-size="13" fill="#222">%s</text>`+"\n", lx+20, esc(s))
		lx += 20 + float64(len(s))*7.6 + 28
	}
	// Grid and y axis.
	for v := 0.0; v <= yMax+step/2; v += step {
		yy := y(v)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e3e3e3"/>`, left, left+plotW, yy, yy)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="12" fill="#555" text-anchor="end">%s</text>`+"\n", left-8, yy+4, esc(c.Tick(v)))
	}
	fmt.Fprintf(&b, `<text transform="translate(20 %.1f) rotate(-90)" font-size="13" fill="#333" text-anchor="middle">%s</text>`+"\n", top+plotH/2, esc(c.YLabel))
	// Bars.
	groupW := plotW / float64(len(c.Groups))
	barW := (groupW*(1-groupPad) - barGap*float64(len(c.Series)-1)) / float64(len(c.Series))
	for g, name := range c.Groups {
		gx := left + groupW*float64(g) + groupW*groupPad/2
		for s := range c.Series {
			v := c.Values[g][s]
			if math.IsNaN(v) {
				continue
			}
			x := gx + float64(s)*(barW+barGap)
			clipped := v > yMax
			if clipped {
				v = yMax
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %s</title></rect>`+"\n",
				x, y(v), barW, top+plotH-y(v), seriesColors[s%len(seriesColors)], esc(name), esc(c.Series[s]), esc(strings.ReplaceAll(c.Labels[g][s], "\n", " ")))
			if clipped { // break mark: the bar goes on beyond the axis
				by := y(v) + 18
				fmt.Fprintf(&b, `<path d="M%.1f %.1f l%.1f -8 M%.1f %.1f l%.1f -8" stroke="#fff" stroke-width="3"/>`+"\n",
					x-1, by, barW+2, x-1, by+7, barW+2)
			}
			lines := strings.Split(c.Labels[g][s], "\n")
			for i, line := range lines {
				ly := y(v) - 5 - labelLineGap*float64(len(lines)-1-i)
				weight := "bold"
				if i > 0 {
					weight = "normal"
				}
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" font-weight="%s" fill="#222" text-anchor="middle">%s</text>`+"\n", x+barW/2, ly, weight, esc(line))
			}
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="14" fill="#222" text-anchor="middle">%s</text>`+"\n", left+groupW*(float64(g)+0.5), top+plotH+24, esc(name))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, left+plotW, top+plotH, top+plotH)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string { return html.EscapeString(s) }

// tick writes an axis value compactly: 0, 500, 2.5k, 10k.
func tick(v float64) string {
	switch {
	case v >= 1000:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1000), ".0") + "k"
	default:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
	}
}

// si writes a count compactly: 950, 9.5k, 12k.
func si(v float64) string {
	switch {
	case v >= 10_000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.1fk", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

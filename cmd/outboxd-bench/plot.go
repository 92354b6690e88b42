package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// plot draws the comparison as an SVG: delivered records/s per shipper on
// the left (log scale: the durable rsyslog queue is two orders of magnitude
// slower), latency p50/p99/p99.9 at the fixed rate on the right.
func plot(rs []result, command string) string {
	const w, h, top, bottom = 900, 380, 50, 300
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="20" y="24" font-size="15" font-weight="bold">to Kafka on one machine: outboxd (durability full; syslog TCP, and HTTP) and rsyslog (omkafka; syslog TCP)</text>`+"\n")
	colors := map[string]string{"outboxd-full": "#2b7bba", "outboxd-full-http": "#74add1", "rsyslog-disk-synced": "#d95f02", "rsyslog-disk": "#e6ab02", "rsyslog-memory": "#999999"}

	// Left: throughput, log10 axis from 1,000 to 1,000,000.
	fmt.Fprintf(&b, `<text x="20" y="%d">delivered records/s (log scale)</text>`+"\n", top-8)
	y := func(v float64) float64 {
		if v < 1000 {
			v = 1000
		}
		return bottom - (math.Log10(v)-3)/3*(bottom-top)
	}
	for _, tick := range []float64{1e3, 1e4, 1e5, 1e6} {
		fmt.Fprintf(&b, `<line x1="60" x2="420" y1="%.0f" y2="%.0f" stroke="#ddd"/><text x="55" y="%.0f" text-anchor="end">%s</text>`+"\n",
			y(tick), y(tick), y(tick)+4, map[float64]string{1e3: "1k", 1e4: "10k", 1e5: "100k", 1e6: "1M"}[tick])
	}
	bw := 300.0 / float64(max(len(rs), 1))
	for i, r := range rs {
		x := 80 + float64(i)*bw
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="%s"/>`+"\n", x, y(r.deliverRate), bw*0.7, bottom-y(r.deliverRate), colors[r.name])
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">%.0fk</text>`+"\n", x+bw*0.35, y(r.deliverRate)-4, r.deliverRate/1000)
	}

	// Right: latency, linear in milliseconds.
	var maxLat time.Duration
	for _, r := range rs {
		maxLat = max(maxLat, r.p999)
	}
	scale := math.Ceil(float64(maxLat)/float64(10*time.Millisecond)) * 10 // ms, a multiple of 10
	if scale == 0 {
		scale = 10
	}
	fmt.Fprintf(&b, `<text x="480" y="%d">latency to Kafka at a fixed rate: p50, p99, p99.9 (ms)</text>`+"\n", top-8)
	ly := func(d time.Duration) float64 { return bottom - float64(d)/float64(time.Millisecond)/scale*(bottom-top) }
	for i := 0.0; i <= 4; i++ {
		v := time.Duration(scale * i / 4 * float64(time.Millisecond))
		fmt.Fprintf(&b, `<line x1="500" x2="880" y1="%.0f" y2="%.0f" stroke="#ddd"/><text x="495" y="%.0f" text-anchor="end">%.0f</text>`+"\n",
			ly(v), ly(v), ly(v)+4, scale*i/4)
	}
	gw := 360.0 / float64(max(len(rs), 1))
	for i, r := range rs {
		for j, d := range []time.Duration{r.p50, r.p99, r.p999} {
			x := 510 + float64(i)*gw + float64(j)*gw*0.25
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="%s" fill-opacity="%.2f"/>`+"\n",
				x, ly(d), gw*0.22, bottom-ly(d), colors[r.name], 1-0.3*float64(j))
		}
	}

	// Legend.
	for i, r := range rs {
		x := 80 + float64(i)*200
		fmt.Fprintf(&b, `<rect x="%.0f" y="335" width="12" height="12" fill="%s"/><text x="%.0f" y="346">%s</text>`+"\n", x, colors[r.name], x+16, r.name)
	}
	fmt.Fprintf(&b, `<text x="80" y="370" fill="#555">%s</text>`+"\n", command)
	b.WriteString("</svg>\n")
	return b.String()
}

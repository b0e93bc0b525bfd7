package testenv

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metric sums the series of the metric name that g gathers whose labels
// include labels (name, value pairs): a counter's or a gauge's value, a
// histogram's sample count. It fails the test if no series matches.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	found := false
	for _, m := range series(t, g, name, labels) {
		found = true
		switch {
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		default:
			sum += m.GetCounter().GetValue()
		}
	}
	if !found {
		t.Fatalf("no metric %s%v", name, labels)
	}
	return sum
}

// Histogram returns the histogram of the first series of name whose
// labels include labels, failing the test if there is none.
func Histogram(t testing.TB, g prometheus.Gatherer, name string, labels ...string) *dto.Histogram {
	t.Helper()
	for _, m := range series(t, g, name, labels) {
		if h := m.GetHistogram(); h != nil {
			return h
		}
	}
	t.Fatalf("no histogram %s%v", name, labels)
	return nil
}

// series gathers g and returns the series of name with labels.
func series(t testing.TB, g prometheus.Gatherer, name string, labels []string) []*dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// Scrape reads the Prometheus text page at url (a process's /metrics):
// each series by its full name (`name{label="value"}`), and each metric
// name with its samples summed over their labels (a histogram's _sum and
// _count are names of their own).
func Scrape(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			out[name] = v
			name = name[:i]
		}
		out[name] += v
	}
	return out, sc.Err()
}

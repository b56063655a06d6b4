// Command loadgen drives HTTP load for `make bench` and prints one JSON result.
//
// Two modes:
//
//   - closed: -conns workers on keep-alive connections send back to back for -duration:
//     the maximum throughput the server sustains (latency here is service time).
//   - open: requests are scheduled at a constant -rate whatever the server does, and each
//     latency is measured from the request's intended send time, not from when a connection
//     became free (coordinated-omission correction, as in wrk2). Requests still queued when
//     the run ends are given -drain to go out; those never sent count as errors ("unsent").
//
// Bodies come from a file; every occurrence of __SEQ__ is replaced by a fixed-width number
// unique to the request (and to the run), so no two requests carry the same content and the
// Content-Length stays constant. A header value may carry __SEQ__ too (an Idempotency-Key, a
// CloudEvent's ce-id: each request a new one). With -gzip each body is compressed after the
// replacement (its own Content-Encoding header is the caller's -H).
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

const placeholder = "__SEQ__"

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

type config struct {
	url       string
	method    string
	bodyFile  string
	headers   headerList
	mode      string
	conns     int
	rate      float64
	duration  time.Duration
	warmup    time.Duration
	timeout   time.Duration
	drain     time.Duration
	status    int
	substring string
	seqPrefix string
	outPath   string
	label     string
	gzip      bool
}

// template is a body split at its placeholders: parts[0] seq parts[1] seq ... parts[n].
type template struct {
	parts [][]byte
	width int
}

func loadTemplate(path string) (*template, error) {
	if path == "" {
		return &template{parts: [][]byte{nil}}, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &template{parts: bytes.Split(raw, []byte(placeholder)), width: 12}, nil
}

func (t *template) render(buf []byte, prefix string, seq uint64) []byte {
	buf = buf[:0]
	digits := strconv.FormatUint(seq, 10)
	pad := t.width - len(digits)
	for i, part := range t.parts {
		buf = append(buf, part...)
		if i == len(t.parts)-1 {
			break
		}
		buf = append(buf, prefix...)
		for j := 0; j < pad; j++ {
			buf = append(buf, '0')
		}
		buf = append(buf, digits...)
	}
	return buf
}

type latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	N    int64   `json:"n"`
}

func summarize(h *hdrhistogram.Histogram) latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return latency{}
	}
	return latency{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
		Min:  ms(h.Min()),
		Mean: math.Round(h.Mean()) / 1000,
		N:    h.TotalCount(),
	}
}

type result struct {
	Label        string           `json:"label,omitempty"`
	Mode         string           `json:"mode"`
	URL          string           `json:"url"`
	Conns        int              `json:"conns"`
	RateOffered  float64          `json:"rate_offered"`
	RateAchieved float64          `json:"rate_achieved"`
	DurationS    float64          `json:"duration_s"`
	WarmupS      float64          `json:"warmup_s"`
	BodyBytes    int              `json:"body_bytes"`
	Requests     int64            `json:"requests"`
	OK           int64            `json:"ok"`
	OKAll        int64            `json:"ok_all"`
	ErrorTotal   int64            `json:"error_total"`
	Errors       map[string]int64 `json:"errors"`
	Latency      latency          `json:"latency_ms"`
	Service      latency          `json:"service_ms"`
	Timeline     []second         `json:"timeline"`
	Started      string           `json:"started"`
	WallS        float64          `json:"wall_s"`
}

// second is one second of the measured window: requests (by intended time), errors, slowest.
type second struct {
	N      int64   `json:"n"`
	Errors int64   `json:"errors"`
	MaxMS  float64 `json:"max_ms"`
}

// worker state: its own histograms and error counts, merged at the end (no locks per request).
type worker struct {
	lat    *hdrhistogram.Histogram
	svc    *hdrhistogram.Histogram
	ok     int64
	okAll  int64 // every success, warm-up and drain included (for CPU per request)
	errors map[string]int64
	// per second of the measured window (by intended time): requests, errors, slowest (µs)
	secN   []int64
	secErr []int64
	secMax []int64
	buf    []byte
	rbuf   bytes.Buffer
	zbuf   bytes.Buffer
	zw     *gzip.Writer
}

func newWorker() *worker {
	return &worker{
		lat:    hdrhistogram.New(1, 120_000_000, 3),
		svc:    hdrhistogram.New(1, 120_000_000, 3),
		errors: map[string]int64{},
	}
}

type runner struct {
	cfg         config
	measureFrom time.Time
	client      *http.Client
	tmpl        *template
	headers     http.Header
	seqHeaders  map[string]*template // header name -> its value, split at __SEQ__
	seq         atomic.Uint64
	bodySize    int
}

func (r *runner) newRequest(w *worker) (*http.Request, error) {
	seq := r.seq.Add(1)
	w.buf = r.tmpl.render(w.buf, r.cfg.seqPrefix, seq)
	payload := w.buf
	if r.cfg.gzip {
		compressed, err := w.compress(payload)
		if err != nil {
			return nil, err
		}
		payload = compressed
	}
	var body io.Reader
	if len(payload) > 0 {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequest(r.cfg.method, r.cfg.url, body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(len(payload))
	for k, v := range r.headers {
		req.Header[k] = v
	}
	for k, t := range r.seqHeaders {
		req.Header[k] = []string{string(t.render(nil, r.cfg.seqPrefix, seq))}
	}
	return req, nil
}

// compress gzips body (level 6, as bench/bodies.py's gzip transport) into the worker's buffer.
func (w *worker) compress(body []byte) ([]byte, error) {
	w.zbuf.Reset()
	if w.zw == nil {
		zw, err := gzip.NewWriterLevel(&w.zbuf, 6)
		if err != nil {
			return nil, err
		}
		w.zw = zw
	} else {
		w.zw.Reset(&w.zbuf)
	}
	if _, err := w.zw.Write(body); err != nil {
		return nil, err
	}
	if err := w.zw.Close(); err != nil {
		return nil, err
	}
	return w.zbuf.Bytes(), nil
}

// do sends one request and classifies it; returns true when it counts as a success.
func (r *runner) do(w *worker) (bool, string) {
	req, err := r.newRequest(w)
	if err != nil {
		return false, "build"
	}
	resp, err := r.client.Do(req)
	if err != nil {
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			return false, "timeout"
		}
		return false, "transport"
	}
	w.rbuf.Reset()
	_, err = w.rbuf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, "transport"
	}
	if resp.StatusCode != r.cfg.status {
		return false, "status_" + strconv.Itoa(resp.StatusCode)
	}
	if r.cfg.substring != "" && !bytes.Contains(w.rbuf.Bytes(), []byte(r.cfg.substring)) {
		return false, "unexpected_body"
	}
	return true, ""
}

func (r *runner) record(w *worker, ok bool, kind string, intended, sent, done time.Time) {
	if ok {
		w.ok++
	} else {
		w.errors[kind]++
	}
	us := atLeast1(done.Sub(intended).Microseconds())
	_ = w.lat.RecordValue(us)
	_ = w.svc.RecordValue(atLeast1(done.Sub(sent).Microseconds()))
	sec := int(intended.Sub(r.measureFrom) / time.Second)
	if sec >= 0 {
		for len(w.secN) <= sec {
			w.secN, w.secErr, w.secMax = append(w.secN, 0), append(w.secErr, 0), append(w.secMax, 0)
		}
		w.secN[sec]++
		if !ok {
			w.secErr[sec]++
		}
		if us > w.secMax[sec] {
			w.secMax[sec] = us
		}
	}
}

func (r *runner) closed(start time.Time) []*worker {
	workers := make([]*worker, r.cfg.conns)
	measureFrom := r.measureFrom
	end := measureFrom.Add(r.cfg.duration)
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = newWorker()
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			for {
				sent := time.Now()
				if !sent.Before(end) {
					return
				}
				ok, kind := r.do(w)
				done := time.Now()
				if ok {
					w.okAll++
				}
				if !sent.Before(measureFrom) && !done.After(end) {
					r.record(w, ok, kind, sent, sent, done)
				}
			}
		}(workers[i])
	}
	wg.Wait()
	return workers
}

func (r *runner) open(start time.Time) []*worker {
	interval := time.Duration(float64(time.Second) / r.cfg.rate)
	measureFrom := r.measureFrom
	end := measureFrom.Add(r.cfg.duration)
	total := int(float64(r.cfg.warmup+r.cfg.duration)/float64(interval)) + 16
	schedule := make(chan time.Time, total)
	drainBy := end.Add(r.cfg.drain)
	go func() {
		defer close(schedule)
		next := start
		for next.Before(end) {
			now := time.Now()
			for !next.After(now) && next.Before(end) {
				schedule <- next
				next = next.Add(interval)
			}
			if wait := time.Until(next); wait > 0 {
				time.Sleep(wait)
			}
		}
	}()
	workers := make([]*worker, r.cfg.conns)
	var wg sync.WaitGroup
	var unsent atomic.Int64
	for i := range workers {
		workers[i] = newWorker()
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			for intended := range schedule {
				measured := !intended.Before(measureFrom)
				if time.Now().After(drainBy) {
					if measured {
						unsent.Add(1)
					}
					continue
				}
				sent := time.Now()
				ok, kind := r.do(w)
				done := time.Now()
				if ok {
					w.okAll++
				}
				if measured {
					r.record(w, ok, kind, intended, sent, done)
				}
			}
		}(workers[i])
	}
	wg.Wait()
	if n := unsent.Load(); n > 0 {
		workers[0].errors["unsent"] += n
	}
	return workers
}

func atLeast1(us int64) int64 {
	if us < 1 {
		return 1
	}
	return us
}

func main() {
	var cfg config
	flag.StringVar(&cfg.url, "url", "", "target URL")
	flag.StringVar(&cfg.method, "method", "POST", "HTTP method")
	flag.StringVar(&cfg.bodyFile, "body", "", "request body template (__SEQ__ is replaced per request)")
	flag.Var(&cfg.headers, "H", "header 'Name: value' (repeatable)")
	flag.StringVar(&cfg.mode, "mode", "closed", "closed (max throughput) or open (constant rate, CO-corrected)")
	flag.IntVar(&cfg.conns, "conns", 32, "connections (closed: concurrency; open: the most in flight)")
	flag.Float64Var(&cfg.rate, "rate", 100, "open mode: requests per second offered")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured duration")
	flag.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "load before measuring (not recorded)")
	flag.DurationVar(&cfg.timeout, "timeout", 15*time.Second, "per-request timeout")
	flag.DurationVar(&cfg.drain, "drain", 5*time.Second, "open mode: how long queued requests may still go out after the run")
	flag.IntVar(&cfg.status, "status", 202, "the status that counts as success")
	flag.StringVar(&cfg.substring, "expect", "", "a substring every successful body must contain")
	flag.StringVar(&cfg.seqPrefix, "seq-prefix", "", "prefix of each __SEQ__ value (default: from the clock)")
	flag.StringVar(&cfg.outPath, "out", "", "write the JSON result here (default: stdout)")
	flag.StringVar(&cfg.label, "label", "", "label copied into the result")
	flag.BoolVar(&cfg.gzip, "gzip", false, "gzip each body after __SEQ__ is replaced (add -H 'Content-Encoding: gzip')")
	flag.Parse()
	if cfg.url == "" || (cfg.mode != "closed" && cfg.mode != "open") || cfg.conns < 1 || cfg.rate <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if cfg.seqPrefix == "" {
		cfg.seqPrefix = strconv.FormatInt(time.Now().UnixNano()%1_000_000_000_000, 36)
	}
	tmpl, err := loadTemplate(cfg.bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	headers := http.Header{}
	seqHeaders := map[string]*template{}
	for _, h := range cfg.headers {
		name, value, found := strings.Cut(h, ":")
		if !found {
			fmt.Fprintln(os.Stderr, "loadgen: header without ':':", h)
			os.Exit(2)
		}
		name, value = http.CanonicalHeaderKey(strings.TrimSpace(name)), strings.TrimSpace(value)
		if strings.Contains(value, placeholder) {
			seqHeaders[name] = &template{parts: bytes.Split([]byte(value), []byte(placeholder)), width: 12}
			continue
		}
		headers.Add(name, value)
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.conns,
		MaxIdleConnsPerHost: cfg.conns,
		MaxConnsPerHost:     cfg.conns,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		IdleConnTimeout:     90 * time.Second,
	}
	r := &runner{
		cfg:        cfg,
		client:     &http.Client{Transport: transport, Timeout: cfg.timeout},
		tmpl:       tmpl,
		headers:    headers,
		seqHeaders: seqHeaders,
	}
	r.bodySize = len(tmpl.render(nil, cfg.seqPrefix, 0))
	started := time.Now()
	r.measureFrom = started.Add(cfg.warmup)
	var workers []*worker
	if cfg.mode == "closed" {
		workers = r.closed(started)
	} else {
		workers = r.open(started)
	}
	wall := time.Since(started)
	lat := hdrhistogram.New(1, 120_000_000, 3)
	svc := hdrhistogram.New(1, 120_000_000, 3)
	res := result{
		Label: cfg.label, Mode: cfg.mode, URL: cfg.url, Conns: cfg.conns,
		DurationS: cfg.duration.Seconds(), WarmupS: cfg.warmup.Seconds(),
		BodyBytes: r.bodySize, Errors: map[string]int64{},
		Started: started.UTC().Format(time.RFC3339Nano), WallS: wall.Seconds(),
	}
	if cfg.mode == "open" {
		res.RateOffered = cfg.rate
	}
	for _, w := range workers {
		lat.Merge(w.lat)
		svc.Merge(w.svc)
		res.OK += w.ok
		res.OKAll += w.okAll
		for k, v := range w.errors {
			res.Errors[k] += v
			res.ErrorTotal += v
		}
	}
	for _, w := range workers {
		for i := range w.secN {
			for len(res.Timeline) <= i {
				res.Timeline = append(res.Timeline, second{})
			}
			res.Timeline[i].N += w.secN[i]
			res.Timeline[i].Errors += w.secErr[i]
			if ms := float64(w.secMax[i]) / 1000; ms > res.Timeline[i].MaxMS {
				res.Timeline[i].MaxMS = ms
			}
		}
	}
	res.Requests = res.OK + res.ErrorTotal
	res.RateAchieved = math.Round(float64(res.OK)/cfg.duration.Seconds()*10) / 10
	res.Latency = summarize(lat)
	res.Service = summarize(svc)
	out, _ := json.MarshalIndent(res, "", "  ")
	if cfg.outPath != "" {
		if err := os.WriteFile(cfg.outPath, append(out, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		return
	}
	os.Stdout.Write(append(out, '\n'))
}

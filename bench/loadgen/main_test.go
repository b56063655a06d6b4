package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"testing"
)

func testRunner(gz bool) *runner {
	return &runner{
		cfg:     config{method: "POST", url: "http://127.0.0.1:1/v1/events", seqPrefix: "p", gzip: gz},
		tmpl:    &template{parts: bytes.Split([]byte(`{"id":"__SEQ__","n":"__SEQ__"}`), []byte(placeholder)), width: 12},
		headers: http.Header{"Content-Type": {"application/json"}},
		seqHeaders: map[string]*template{
			"Ce-Id": {parts: bytes.Split([]byte("__SEQ__-0"), []byte(placeholder)), width: 12},
		},
	}
}

func readBody(t *testing.T, req *http.Request) []byte {
	t.Helper()
	raw, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) != req.ContentLength {
		t.Fatalf("Content-Length %d for a body of %d bytes", req.ContentLength, len(raw))
	}
	return raw
}

func TestEveryRequestFillsBodyAndHeaderWithItsOwnNumber(t *testing.T) {
	r := testRunner(false)
	w := newWorker()
	for want := 1; want <= 2; want++ {
		req, err := r.newRequest(w)
		if err != nil {
			t.Fatal(err)
		}
		seq := "p00000000000" + string(rune('0'+want))
		if got := req.Header.Get("Ce-Id"); got != seq+"-0" {
			t.Fatalf("ce-id %q, want %q", got, seq+"-0")
		}
		if got := string(readBody(t, req)); got != `{"id":"`+seq+`","n":"`+seq+`"}` {
			t.Fatalf("body %s", got)
		}
		if req.Header.Get("Content-Type") != "application/json" {
			t.Fatal("fixed header lost")
		}
	}
}

func TestGzipCompressesTheFilledBody(t *testing.T) {
	r := testRunner(true)
	w := newWorker()
	for i := 0; i < 3; i++ { // the worker's writer is reused
		req, err := r.newRequest(w)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(readBody(t, req)))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		want := string(r.tmpl.render(nil, "p", uint64(i+1)))
		if string(plain) != want {
			t.Fatalf("inflated %s, want %s", plain, want)
		}
	}
}

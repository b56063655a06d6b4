module github.com/audit-ingest/bench/loadgen

go 1.19

require github.com/HdrHistogram/hdrhistogram-go v1.1.2

package awss3exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/objstore"
)

// errBodyNotLogs is returned for the body marshaler on a traces or metrics pipeline.
var errBodyNotLogs = errors.New("marshaler body supports logs only")

// s3Exporter writes one object per exported batch. Objects are written
// whole (gocloud's Writer uploads on Close), so a failed write leaves no
// partial object and the batch is retried by exporterhelper.
type s3Exporter struct {
	cfg    *Config
	set    exporter.Settings
	bucket *objstore.Bucket
	now    func() time.Time
}

func newS3Exporter(cfg *Config, set exporter.Settings) *s3Exporter {
	return &s3Exporter{cfg: cfg, set: set, now: time.Now}
}

func (e *s3Exporter) start(ctx context.Context, _ component.Host) error {
	var err error
	u := e.cfg.S3Uploader
	e.bucket, err = objstore.OpenS3(ctx, objstore.S3Options{
		Bucket:       u.S3Bucket,
		Region:       u.Region,
		Endpoint:     u.Endpoint,
		PathStyle:    u.S3ForcePathStyle,
		DisableHTTPS: u.DisableSSL,
	})
	return err
}

func (e *s3Exporter) shutdown(context.Context) error {
	if e.bucket == nil {
		return nil
	}
	return e.bucket.Close()
}

func (e *s3Exporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	var (
		buf []byte
		err error
	)
	switch e.cfg.MarshalerName {
	case MarshalerOTLPProto:
		buf, err = (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	case MarshalerBody:
		buf = logBodies(ld)
	default:
		buf, err = (&plog.JSONMarshaler{}).MarshalLogs(ld)
	}
	if err != nil {
		return consumererror.NewPermanent(fmt.Errorf("marshal logs: %w", err))
	}
	return e.upload(ctx, "logs", buf)
}

func (e *s3Exporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	var (
		buf []byte
		err error
	)
	switch e.cfg.MarshalerName {
	case MarshalerOTLPProto:
		buf, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	case MarshalerBody:
		err = errBodyNotLogs
	default:
		buf, err = (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	}
	if err != nil {
		return consumererror.NewPermanent(fmt.Errorf("marshal traces: %w", err))
	}
	return e.upload(ctx, "traces", buf)
}

func (e *s3Exporter) pushMetrics(ctx context.Context, md pmetric.Metrics) error {
	var (
		buf []byte
		err error
	)
	switch e.cfg.MarshalerName {
	case MarshalerOTLPProto:
		buf, err = (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	case MarshalerBody:
		err = errBodyNotLogs
	default:
		buf, err = (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
	}
	if err != nil {
		return consumererror.NewPermanent(fmt.Errorf("marshal metrics: %w", err))
	}
	return e.upload(ctx, "metrics", buf)
}

// logBodies renders one body per line, as upstream's body marshaler does.
func logBodies(ld plog.Logs) []byte {
	var b bytes.Buffer
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				b.WriteString(lr.Body().AsString())
				b.WriteByte('\n')
			}
		}
	}
	return b.Bytes()
}

// objectKey is prefix/partition/<file_prefix><signal>_<unique>.<ext>[.gz],
// the layout of upstream's awss3 exporter, so existing Athena tables and
// lifecycle rules keep working.
func (e *s3Exporter) objectKey(signal string) string {
	u := e.cfg.S3Uploader
	ext := "json"
	switch e.cfg.MarshalerName {
	case MarshalerOTLPProto:
		ext = "binpb"
	case MarshalerBody:
		ext = "txt"
	}
	if u.Compression == "gzip" {
		ext += ".gz"
	}
	now := e.now()
	name := fmt.Sprintf("%s%s_%d%06d.%s", u.FilePrefix, signal, now.UnixNano(), rand.IntN(1_000_000), ext)
	return strings.TrimPrefix(path.Join(u.S3Prefix, partition(u.S3PartitionFormat, now), name), "/")
}

func (e *s3Exporter) upload(ctx context.Context, signal string, buf []byte) error {
	if e.cfg.S3Uploader.Compression == "gzip" {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		if _, err := zw.Write(buf); err != nil {
			return consumererror.NewPermanent(fmt.Errorf("gzip: %w", err))
		}
		if err := zw.Close(); err != nil {
			return consumererror.NewPermanent(fmt.Errorf("gzip: %w", err))
		}
		buf = z.Bytes()
	}
	key := e.objectKey(signal)
	// A write error is retryable: exporterhelper's retry sender tries again.
	if err := e.bucket.WriteAll(ctx, key, buf, nil); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

package awss3exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"gocloud.dev/blob"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/objstore/objstoretest"
)

var fakeS3 = objstoretest.FakeS3

func listKeys(t *testing.T, b *blob.Bucket) []string {
	t.Helper()
	var keys []string
	it := b.List(nil)
	for {
		obj, err := it.Next(context.Background())
		if err == io.EOF {
			return keys
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, obj.Key)
	}
}

// testConfig is an exporter config for bucket on the fake S3 at endpoint,
// with no queue, so each Consume call is one synchronous upload.
func testConfig(endpoint, bucket string) *Config {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.S3Uploader = S3UploaderConfig{Region: "eu-west-1", S3Bucket: bucket, Endpoint: endpoint, S3ForcePathStyle: true}
	cfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	return cfg
}

// startedExporter creates the exporter with create, starts it and shuts it
// down at the end of the test.
func startedExporter[E component.Component](t *testing.T, create func(context.Context, exporter.Settings, component.Config) (E, error), cfg *Config) E {
	t.Helper()
	ctx := context.Background()
	exp, err := create(ctx, exportertest.NewNopSettings(Type), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exp.Shutdown(context.Background()) })
	return exp
}

// TestLogsToS3 exports logs through the real S3 client to an in-process
// S3 server and reads the object back.
func TestLogsToS3(t *testing.T) {
	endpoint := fakeS3(t, "acme-logs")
	cfg := testConfig(endpoint, "acme-logs")
	cfg.S3Uploader.S3Prefix = "otel-logs/production"
	cfg.S3Uploader.S3PartitionFormat = "year=%Y/month=%m"
	cfg.S3Uploader.Compression = "gzip"
	ctx := context.Background()
	exp := startedExporter(t, NewFactory().CreateLogs, cfg)
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("payment accepted")
	if err := exp.ConsumeLogs(ctx, ld); err != nil {
		t.Fatal(err)
	}

	b, err := objstore.OpenS3(ctx, objstore.S3Options{Bucket: "acme-logs", Region: "eu-west-1", Endpoint: endpoint, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	keys := listKeys(t, b)
	if len(keys) != 1 {
		t.Fatalf("objects = %v, want 1", keys)
	}
	if !strings.HasPrefix(keys[0], "otel-logs/production/year=") || !strings.Contains(keys[0], "/logs_") || !strings.HasSuffix(keys[0], ".json.gz") {
		t.Errorf("key %q does not follow prefix/partition/logs_<n>.json.gz", keys[0])
	}
	raw, err := b.ReadAll(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(js)
	if err != nil {
		t.Fatal(err)
	}
	if got.LogRecordCount() != 1 || got.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Body().Str() != "payment accepted" {
		t.Errorf("object holds %d records", got.LogRecordCount())
	}
}

// TestWriteFailureIsRetryable checks that a bucket that refuses writes
// surfaces as an error exporterhelper retries, not a silent drop.
func TestWriteFailureIsRetryable(t *testing.T) {
	endpoint := fakeS3(t, "exists")
	cfg := testConfig(endpoint, "missing")
	cfg.RetryConfig.Enabled = false
	exp := startedExporter(t, NewFactory().CreateTraces, cfg)
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("x")
	err := exp.ConsumeTraces(context.Background(), td)
	if err == nil {
		t.Fatal("write to a missing bucket succeeded")
	}
	if consumererror.IsPermanent(err) {
		t.Errorf("write failure %v marked permanent; it must be retryable", err)
	}
}

func TestBodyMarshalerWritesLines(t *testing.T) {
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	lrs.AppendEmpty().Body().SetStr("first")
	lrs.AppendEmpty().Body().SetStr("second")
	if got := string(logBodies(ld)); got != "first\nsecond\n" {
		t.Errorf("body marshaler = %q", got)
	}
}

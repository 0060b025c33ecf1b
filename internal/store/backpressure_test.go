package store_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sightlinehq/sightline/exporter/sightlineexporter"
	"github.com/sightlinehq/sightline/extension/sightlinestorage"
	"github.com/sightlinehq/sightline/internal/otlpguard"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// hostWith is a host whose extensions are exts.
type hostWith map[component.ID]component.Component

func (h hostWith) GetExtensions() map[component.ID]component.Component { return h }

// The upstream OTLP receiver, guarded and asking the storage extension's
// admission as Sightline runs it, in front of the sightline exporter, with
// the block writer held up: once the budget is spent, a refusal reaches gRPC clients
// as UNAVAILABLE with RetryInfo and HTTP clients as 503 with Retry-After,
// before their requests are read; the OTel Go SDK's exporters, over both,
// retry and deliver every span once blocks are written again.
func TestBackpressureReachesOTLPClients(t *testing.T) {
	ctx := context.Background()
	sf := sightlinestorage.NewFactory()
	scfg := sf.CreateDefaultConfig().(*sightlinestorage.Config)
	scfg.Path = t.TempDir()
	scfg.Memory.LimitMiB = 16
	ext, err := sf.Create(ctx, extensiontest.NewNopSettings(sf.Type()), scfg)
	require.NoError(t, err)
	host := hostWith{component.NewID(sightlinestorage.Type): ext}
	require.NoError(t, ext.Start(ctx, host))
	defer ext.Shutdown(ctx)
	ef := sightlineexporter.NewFactory()
	exp, err := ef.CreateTraces(ctx, exportertest.NewNopSettings(ef.Type()), ef.CreateDefaultConfig())
	require.NoError(t, err)
	require.NoError(t, exp.Start(ctx, host))
	defer exp.Shutdown(ctx)
	db := ext.(*sightlinestorage.Storage).Store()

	rf := otlpguard.WrapReceiverFactory(otlpreceiver.NewFactory(), otlpguard.Limits{})
	rcfg := rf.CreateDefaultConfig().(*otlpreceiver.Config)
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	rcfg.Protocols.GRPC.GetOrInsertDefault().NetAddr.Endpoint = grpcAddr
	rcfg.Protocols.HTTP = configoptional.Some(*rcfg.Protocols.HTTP.GetOrInsertDefault())
	rcfg.Protocols.HTTP.Get().ServerConfig.NetAddr.Endpoint = httpAddr
	rcv, err := rf.CreateTraces(ctx, receivertest.NewNopSettings(rf.Type()), rcfg, exp)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(ctx, host))
	defer rcv.Shutdown(ctx)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)

	// Fill the budget while nothing is written to blocks.
	release := db.HoldBlockWriter()
	defer release()
	g := workload.New(21, time.Now(), workload.Options{})
	var refusal error
	for i := 0; i < 5000 && refusal == nil; i++ {
		td, _ := g.Batch(20)
		_, refusal = client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	}
	st, _ := status.FromError(refusal)
	require.Equal(t, codes.Unavailable, st.Code(), "%v", refusal)
	var delay time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	require.Equal(t, time.Second, delay)
	// One client, one request at a time: the refusal came before decoding.
	require.Equal(t, int64(1), db.Stats().RefusedTraceRequests)
	require.Zero(t, db.Stats().RefusedSpans)

	td, _ := g.Batch(1)
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	require.NoError(t, err)
	resp, err := http.Post("http://"+httpAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))

	// The SDKs, retrying as configured by default but faster.
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: 50 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: time.Minute}))
	require.NoError(t, err)
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(httpAddr), otlptracehttp.WithInsecure(),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 50 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: time.Minute}))
	require.NoError(t, err)
	spans := func(first byte, n int) ([]sdktrace.ReadOnlySpan, storage.TraceID) {
		tid := trace.TraceID{first, 0xbb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
		var stubs tracetest.SpanStubs
		for i := range n {
			stubs = append(stubs, tracetest.SpanStub{
				Name:        "retried",
				SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{first, byte(i + 1)}}),
				StartTime:   time.Now(), EndTime: time.Now().Add(time.Millisecond),
			})
		}
		return stubs.Snapshots(), storage.TraceID(tid)
	}
	refusedBefore := db.Stats().RefusedTraceRequests
	done := make(chan error, 2)
	grpcSpans, grpcTrace := spans(1, 5)
	httpSpans, httpTrace := spans(2, 7)
	go func() { done <- grpcExp.ExportSpans(ctx, grpcSpans) }()
	go func() { done <- httpExp.ExportSpans(ctx, httpSpans) }()
	store.WaitUntil(t, "both SDKs to be refused", func() bool { return db.Stats().RefusedTraceRequests >= refusedBefore+2 })
	select {
	case err := <-done:
		t.Fatalf("an SDK export returned while the store refused: %v", err)
	default:
	}

	release()
	for range 2 {
		require.NoError(t, <-done)
	}
	q, err := db.Querier(ctx)
	require.NoError(t, err)
	defer q.Close()
	for id, n := range map[storage.TraceID]int{grpcTrace: 5, httpTrace: 7} {
		got, err := q.TraceByID(ctx, id, 0, 0)
		require.NoError(t, err)
		require.Len(t, got, n)
	}
	require.NoError(t, grpcExp.Shutdown(ctx))
	require.NoError(t, httpExp.Shutdown(ctx))
}

package tenancyprocessor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func withHeader(vals ...string) context.Context {
	return client.NewContext(context.Background(), client.Info{
		Metadata: client.NewMetadata(map[string][]string{"X-Scope-OrgID": vals}),
	})
}

type authData map[string]any

func (a authData) GetAttribute(k string) any { return a[k] }
func (a authData) GetAttributeNames() []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	return out
}

// spoofedTraces names tenant "b" in its payload on two resources.
func spoofedTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	for range 2 {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("tenant.id", "b")
		rs.Resource().Attributes().PutStr("tenant_id", "b")
		rs.Resource().Attributes().PutStr("service.name", "svc")
		rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("op")
	}
	return td
}

func TestTracesTakeTheTenantFromTheRequest(t *testing.T) {
	sink := &consumertest.TracesSink{}
	p, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(Type), createDefaultConfig(), sink)
	require.NoError(t, err)

	require.NoError(t, p.ConsumeTraces(withHeader("a"), spoofedTraces()))
	require.Len(t, sink.AllTraces(), 1)
	rss := sink.AllTraces()[0].ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		v, _ := rss.At(i).Resource().Attributes().Get("tenant.id")
		require.Equal(t, "a", v.Str(), "the payload's tenant is replaced by the request's")
		v, _ = rss.At(i).Resource().Attributes().Get("service.name")
		require.Equal(t, "svc", v.Str())
		_, ok := rss.At(i).Resource().Attributes().Get("tenant_id")
		require.False(t, ok, "an attribute that would show as the tenant label is removed")
	}

	for name, ctx := range map[string]context.Context{
		"no header":     context.Background(),
		"empty header":  withHeader(""),
		"two tenants":   withHeader("a", "b"),
		"invalid chars": withHeader("a/../b"),
	} {
		err := p.ConsumeTraces(ctx, spoofedTraces())
		require.Error(t, err, name)
		require.True(t, consumererror.IsPermanent(err), "%s: a missing tenant cannot succeed on retry", name)
	}
	require.ErrorIs(t, p.ConsumeTraces(context.Background(), spoofedTraces()), ErrNoTenant)
	st, _ := status.FromError(p.ConsumeTraces(context.Background(), spoofedTraces()))
	require.Equal(t, codes.Unauthenticated, st.Code(), "receivers answer 401 / UNAUTHENTICATED")
	st, _ = status.FromError(p.ConsumeTraces(withHeader("a/b"), spoofedTraces()))
	require.Equal(t, codes.InvalidArgument, st.Code())
	require.ErrorContains(t, p.ConsumeTraces(context.Background(), spoofedTraces()), "include_metadata")
	require.Len(t, sink.AllTraces(), 1, "refused requests reach nothing")

	require.NoError(t, p.ConsumeTraces(withHeader("a", "a"), spoofedTraces()), "the same tenant twice is one tenant")
}

func TestAuthAttributeOverridesTheHeader(t *testing.T) {
	sink := &consumertest.LogsSink{}
	cfg := &Config{Header: "X-Scope-OrgID", AuthAttribute: "subject", ResourceAttribute: "tenant.id"}
	p, err := NewFactory().CreateLogs(context.Background(), processortest.NewNopSettings(Type), cfg, sink)
	require.NoError(t, err)

	ld := plog.NewLogs()
	rec := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	rec.Body().SetStr("x")
	rec.Attributes().PutStr("tenant.id", "mallory")
	rec.Attributes().PutStr("user", "bob")
	ctx := client.NewContext(context.Background(), client.Info{
		Auth:     authData{"subject": "alice"},
		Metadata: client.NewMetadata(map[string][]string{"X-Scope-OrgID": {"mallory"}}),
	})
	require.NoError(t, p.ConsumeLogs(ctx, ld))
	v, _ := sink.AllLogs()[0].ResourceLogs().At(0).Resource().Attributes().Get("tenant.id")
	require.Equal(t, "alice", v.Str())
	require.Equal(t, map[string]any{"user": "bob"}, sink.AllLogs()[0].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes().AsRaw(),
		"a record's own tenant attribute would show as the stream's tenant label")

	err = p.ConsumeLogs(withHeader("mallory"), plog.NewLogs())
	require.ErrorIs(t, err, ErrNoTenant, "with auth_attribute set, a header alone names no tenant")
	require.ErrorContains(t, err, `no "subject" attribute`)
}

func TestMetricsPointsCannotNameAnotherTenant(t *testing.T) {
	sink := &consumertest.MetricsSink{}
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(Type), createDefaultConfig(), sink)
	require.NoError(t, err)

	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("tenant.id", "b")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().Attributes().PutStr("tenant_id", "b")
	g := sm.Metrics().AppendEmpty().SetEmptyGauge().DataPoints()
	dp := g.AppendEmpty()
	for _, k := range []string{"tenant_id", "tenant.id", "tenant__id", "tenant-id", "TENANT_ID"} {
		dp.Attributes().PutStr(k, "b")
	}
	dp.Attributes().PutStr("route", "/a")
	dp.Attributes().PutStr("tenantid", "kept: it does not translate to tenant_id")
	h := sm.Metrics().AppendEmpty().SetEmptyHistogram().DataPoints().AppendEmpty()
	h.Attributes().PutStr("tenant_id", "b")

	require.NoError(t, p.ConsumeMetrics(withHeader("a"), md))
	got := sink.AllMetrics()[0].ResourceMetrics().At(0)
	v, _ := got.Resource().Attributes().Get("tenant.id")
	require.Equal(t, "a", v.Str())
	gsm := got.ScopeMetrics().At(0)
	require.Equal(t, 0, gsm.Scope().Attributes().Len())
	attrs := gsm.Metrics().At(0).Gauge().DataPoints().At(0).Attributes().AsRaw()
	require.Equal(t, map[string]any{"route": "/a", "TENANT_ID": "b", "tenantid": "kept: it does not translate to tenant_id"}, attrs,
		"label names are case-sensitive: TENANT_ID is another label")
	require.Equal(t, 0, gsm.Metrics().At(1).Histogram().DataPoints().At(0).Attributes().Len())
}

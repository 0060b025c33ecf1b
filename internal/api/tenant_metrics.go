package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// Metrics tenancy. A tenant's metrics carry a label named as Prometheus's
// OTLP translation names the tenancy resource attribute (tenant.id →
// tenant_id): the sightline exporter sets it when the attribute is
// promoted (metrics::promote_resource_attributes), and remote write and
// OTLP writes on this API set it from the tenant header. Every selector,
// series, label and exemplar lookup of a tenant's request gets a matcher
// on it, as Cortex and Mimir scope PromQL. Rule evaluation has no tenant
// and sees every series.

type promTenantKey struct{}

func promTenant(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(promTenantKey{}).(string)
	return t, ok
}

// tenantLabel is the label that holds the tenant.
func (a *API) tenantLabel() string {
	n, err := (&otlptranslator.LabelNamer{}).Build(a.cfg.Tenancy.ResourceAttribute)
	if err != nil {
		return a.cfg.Tenancy.ResourceAttribute // Validate refuses an empty one
	}
	return n
}

// promTenancy requires the tenant header on the Prometheus API and puts
// the tenant in the request's context, where the storage wrappers below
// find it.
func (a *API) promTenancy(next http.Handler) http.Handler {
	if !a.cfg.Tenancy.Enabled {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := a.tenant(r)
		if err != nil {
			a.fail(w, r, styleJSON, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), promTenantKey{}, t))
		switch r.URL.Path {
		case "/api/v1/status/tsdb":
			// Prometheus's handler reads the head's statistics, which
			// count every tenant's series.
			a.tenantTSDBStatus(w, r, t)
			return
		case "/api/v1/status/tsdb/blocks":
			a.fail(w, r, styleJSON, fmt.Errorf("%w: blocks hold every tenant's series; /api/v1/status/tsdb answers per tenant", errNotPerTenant))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// scope adds the tenant matcher to ms when ctx carries a tenant.
func scope(ctx context.Context, label string, ms []*labels.Matcher) []*labels.Matcher {
	t, ok := promTenant(ctx)
	if !ok {
		return ms
	}
	return append(slices.Clip(ms), labels.MustNewMatcher(labels.MatchEqual, label, t))
}

type tenantSeriesQuerier struct {
	storage.Querier
	label string
}

func (q tenantSeriesQuerier) Select(ctx context.Context, sorted bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return q.Querier.Select(ctx, sorted, hints, scope(ctx, q.label, ms)...)
}

func (q tenantSeriesQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.Querier.LabelValues(ctx, name, hints, scope(ctx, q.label, ms)...)
}

func (q tenantSeriesQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.Querier.LabelNames(ctx, hints, scope(ctx, q.label, ms)...)
}

type tenantChunkQuerier struct {
	storage.ChunkQuerier
	label string
}

func (q tenantChunkQuerier) Select(ctx context.Context, sorted bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	return q.ChunkQuerier.Select(ctx, sorted, hints, scope(ctx, q.label, ms)...)
}

func (q tenantChunkQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.ChunkQuerier.LabelValues(ctx, name, hints, scope(ctx, q.label, ms)...)
}

func (q tenantChunkQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.ChunkQuerier.LabelNames(ctx, hints, scope(ctx, q.label, ms)...)
}

// tenantExemplarQuerier scopes each matcher set; the tenant is taken from
// the context the querier was made with, as Select has none.
type tenantExemplarQuerier struct {
	storage.ExemplarQuerier
	ctx   context.Context
	label string
}

func (q tenantExemplarQuerier) Select(start, end int64, sets ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	scoped := make([][]*labels.Matcher, len(sets))
	for i, ms := range sets {
		scoped[i] = scope(q.ctx, q.label, ms)
	}
	return q.ExemplarQuerier.Select(start, end, scoped...)
}

// tenantAppender labels every series a tenant writes with its tenant,
// replacing a tenant label the sender set. Refs stay consistent: every
// call rewrites the labels the same way.
type tenantAppender struct {
	storage.Appender
	label, tenant string
}

func (a tenantAppender) with(l labels.Labels) labels.Labels {
	return labels.NewBuilder(l).Set(a.label, a.tenant).Labels()
}

func (a tenantAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	return a.Appender.Append(ref, a.with(l), t, v)
}

func (a tenantAppender) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	return a.Appender.AppendExemplar(ref, a.with(l), e)
}

func (a tenantAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.Appender.AppendHistogram(ref, a.with(l), t, h, fh)
}

func (a tenantAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return a.Appender.AppendHistogramSTZeroSample(ref, a.with(l), t, st, h, fh)
}

func (a tenantAppender) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	return a.Appender.UpdateMetadata(ref, a.with(l), m)
}

func (a tenantAppender) AppendSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64) (storage.SeriesRef, error) {
	return a.Appender.AppendSTZeroSample(ref, a.with(l), t, st)
}

type tenantAppenderV2 struct {
	storage.AppenderV2
	label, tenant string
}

func (a tenantAppenderV2) Append(ref storage.SeriesRef, l labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, o storage.AppendV2Options) (storage.SeriesRef, error) {
	return a.AppenderV2.Append(ref, labels.NewBuilder(l).Set(a.label, a.tenant).Labels(), st, t, v, h, fh, o)
}

package api

import (
	"context"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// tenantScanLimit bounds the spans read to list a tenant's services, tags
// and values, which the store's block metadata cannot answer per tenant.
const tenantScanLimit = 200_000

// tenantQuerier shows one tenant's data: everything whose resource
// attribute key equals tenant. The tenant matcher is added to every store
// query, so it is pushed down like any other.
type tenantQuerier struct {
	storage.Querier
	key, tenant string
	m           *storage.Matcher
}

func newTenantQuerier(q storage.Querier, key, tenant string) storage.Querier {
	m, _ := storage.NewMatcher(storage.ScopeResource, key, storage.OpEqual, storage.Str(tenant))
	return &tenantQuerier{Querier: q, key: key, tenant: tenant, m: m}
}

func (t *tenantQuerier) owns(r *storage.Resource) bool {
	v, ok := t.m.Lookup(nil, r)
	return t.m.MatchValue(v, ok)
}

func (t *tenantQuerier) TraceByID(ctx context.Context, id storage.TraceID, start, end int64) ([]storage.Span, error) {
	spans, err := t.Querier.TraceByID(ctx, id, start, end)
	spans = slices.DeleteFunc(spans, func(s storage.Span) bool { return !t.owns(s.Resource) })
	if len(spans) == 0 {
		return nil, storage.ErrNotFound
	}
	return spans, err
}

func (t *tenantQuerier) Spans(ctx context.Context, q *storage.SpanQuery, fn func(*storage.Span) bool) error {
	sq := *q
	sq.Matchers = append(slices.Clone(q.Matchers), t.m)
	return t.Querier.Spans(ctx, &sq, fn)
}

// FindTraces passes the store's trace-level candidates on: they name
// traces of every tenant, but a search checks each through Spans and
// TraceByID, which read the tenant's spans only. Summaries are not
// passed on: they count every tenant's spans of a trace.
func (t *tenantQuerier) FindTraces(ctx context.Context, f *storage.TraceFilter, fn func(storage.TraceID) bool) error {
	tf, ok := t.Querier.(storage.TraceFinder)
	if !ok {
		return nil
	}
	return tf.FindTraces(ctx, f, fn)
}

// SpanParts passes the store's parts on with the tenant's matcher added,
// and the tenant in their IDs, so that what a reader keeps per part is
// kept per tenant.
func (t *tenantQuerier) SpanParts(start, end int64) []storage.SpanPart {
	pq, ok := t.Querier.(storage.PartedQuerier)
	if !ok {
		return []storage.SpanPart{{Spans: t.Spans}}
	}
	parts := pq.SpanParts(start, end)
	for i := range parts {
		p := parts[i]
		if p.ID != "" {
			parts[i].ID = p.ID + "\x00tenant=" + t.tenant
		}
		parts[i].Spans = func(ctx context.Context, q *storage.SpanQuery, fn func(*storage.Span) bool) error {
			sq := *q
			sq.Matchers = append(slices.Clone(q.Matchers), t.m)
			return p.Spans(ctx, &sq, fn)
		}
	}
	return parts
}

// LogsByTrace reads the tenant's records only (Logs adds its matcher), so
// that the limit oldest are the tenant's.
func (t *tenantQuerier) LogsByTrace(ctx context.Context, id storage.TraceID, span storage.SpanID, start, end int64, limit int) ([]storage.LogRecord, error) {
	out := storage.OldestLogs{Limit: limit}
	err := t.Logs(ctx, &storage.LogQuery{TraceID: id, SpanID: span, Start: start, End: end}, func(l *storage.LogRecord) bool {
		out.Add(l)
		return true
	})
	return out.Result(), err
}

func (t *tenantQuerier) Logs(ctx context.Context, q *storage.LogQuery, fn func(*storage.LogRecord) bool) error {
	lq := *q
	lq.Matchers = append(slices.Clone(q.Matchers), t.m)
	return t.Querier.Logs(ctx, &lq, fn)
}

func (t *tenantQuerier) scan(ctx context.Context, start, end int64, fn func(*storage.Span)) error {
	n := 0
	return t.Spans(ctx, &storage.SpanQuery{Start: start, End: end}, func(s *storage.Span) bool {
		fn(s)
		n++
		return n < tenantScanLimit
	})
}

func (t *tenantQuerier) Services(ctx context.Context, start, end int64) ([]string, error) {
	set := map[string]bool{}
	err := t.scan(ctx, start, end, func(s *storage.Span) { set[s.Resource.ServiceName()] = true })
	delete(set, "")
	return sortedKeys(set), err
}

func (t *tenantQuerier) Operations(ctx context.Context, service string, start, end int64) ([]storage.Operation, error) {
	set := storage.OperationSet{}
	err := t.scan(ctx, start, end, func(s *storage.Span) {
		if service == "" || s.Resource.ServiceName() == service {
			set[storage.Operation{Name: s.Name, Kind: s.Kind}] = struct{}{}
		}
	})
	return set.Sorted(), err
}

func (t *tenantQuerier) TagNames(ctx context.Context, start, end int64) (storage.TagNames, error) {
	res, span := map[string]bool{}, map[string]bool{}
	err := t.scan(ctx, start, end, func(s *storage.Span) {
		for _, a := range s.Attrs {
			span[a.Key] = true
		}
		if s.Resource != nil {
			for _, a := range s.Resource.Attrs {
				res[a.Key] = true
			}
		}
	})
	return storage.TagNames{Resource: sortedKeys(res), Span: sortedKeys(span)}, err
}

func (t *tenantQuerier) TagValues(ctx context.Context, scope storage.Scope, key string, start, end int64, limit int) ([]storage.Value, error) {
	m, _ := storage.NewMatcher(scope, key, storage.OpExists, storage.Value{})
	seen := map[storage.Value]bool{}
	var out []storage.Value
	err := t.scan(ctx, start, end, func(s *storage.Span) {
		if v, ok := m.Lookup(s.Attrs, s.Resource); ok && !seen[v] && len(out) < limit {
			seen[v] = true
			out = append(out, v)
		}
	})
	return out, err
}

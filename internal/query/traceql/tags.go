package traceql

import (
	"cmp"
	"context"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// ParseField parses a single field reference, as the v2 tag values API
// receives it: resource.service.name, span.http.method, .x, status,
// span:kind ...
func ParseField(src string) (Expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	if len(toks) != 2 {
		return nil, errorf(Pos{1, 1}, "%q is not an attribute or intrinsic", src)
	}
	t := toks[0]
	switch t.kind {
	case tAttr:
		a := t.attr
		return &a, nil
	case tIdent:
		if in, ok := intrinsicByName[t.text]; ok {
			return &IntrinsicRef{Intrinsic: in, pos: t.pos}, nil
		}
	}
	return nil, errorf(t.pos, "%q is not an attribute or intrinsic", src)
}

// UnscopedAttribute returns .name, which the v1 tag APIs use.
func UnscopedAttribute(name string) Expr { return &Attribute{Scope: ScopeNone, Name: name} }

// TagValues returns up to limit distinct values of field on spans in
// [start, end]. With a filter, only spans it matches count; filters that
// need whole traces are ignored, as the values are only suggestions.
func TagValues(ctx context.Context, q storage.Querier, field Expr, filter *SpansetFilter, start, end int64, limit int) ([]Static, error) {
	if in, ok := field.(*IntrinsicRef); ok {
		switch in.Intrinsic {
		case IntrinsicStatus:
			return []Static{NewStatus(storage.StatusError), NewStatus(storage.StatusOK), NewStatus(storage.StatusUnset)}, nil
		case IntrinsicKind:
			var out []Static
			for k := range 6 {
				out = append(out, NewKind(storage.SpanKind(k)))
			}
			return out, nil
		}
	}
	if filter != nil && (filter.Expr == nil || needsTrace(filter.Expr)) {
		filter = nil
	}
	if filter == nil {
		if vals, ok, err := indexedValues(ctx, q, field, start, end, limit); ok || err != nil {
			return vals, err
		}
	}
	var (
		out  []Static
		seen = map[Static]bool{}
		one  = newSingle()
		pq   = &storage.SpanQuery{Start: start, End: end}
		ev   bool
		lk   bool
	)
	if filter != nil {
		pq, _ = pushdown(filter.Expr, start, end)
		ev, lk = iterates(filter.Expr)
	}
	err := q.Spans(ctx, pq, func(s *storage.Span) bool {
		tr := one.with(s)
		if filter != nil && !matchSpan(filter.Expr, tr, 0, ev, lk) {
			return true
		}
		v := eval(field, &evalCtx{tr: tr, span: 0})
		if v.Type != TypeNil && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
		return len(out) < limit
	})
	sortStatics(out)
	return out, err
}

// indexedValues answers from the store's per-block value lists when it can.
func indexedValues(ctx context.Context, q storage.Querier, field Expr, start, end int64, limit int) ([]Static, bool, error) {
	switch f := field.(type) {
	case *IntrinsicRef:
		switch f.Intrinsic {
		case IntrinsicName:
			ops, err := q.Operations(ctx, "", start, end)
			var out []Static
			seen := map[string]bool{}
			for _, o := range ops {
				if !seen[o.Name] && len(out) < limit {
					seen[o.Name] = true
					out = append(out, NewString(o.Name))
				}
			}
			sortStatics(out)
			return out, true, err
		case IntrinsicRootService:
			svcs, err := q.Services(ctx, start, end)
			var out []Static
			for _, s := range svcs[:min(len(svcs), limit)] {
				out = append(out, NewString(s))
			}
			return out, true, err
		}
	case *Attribute:
		scope, ok := storageScope(f)
		if !ok {
			return nil, false, nil
		}
		vals, err := q.TagValues(ctx, scope, f.Name, start, end, limit)
		out := make([]Static, 0, len(vals))
		for _, v := range vals {
			out = append(out, fromValue(v))
		}
		sortStatics(out)
		return out, true, err
	}
	return nil, false, nil
}

func sortStatics(vs []Static) {
	slices.SortFunc(vs, func(a, b Static) int {
		if a.Type != b.Type {
			return cmp.Compare(a.Type, b.Type)
		}
		if o, ok := a.compare(b); ok {
			return o
		}
		return cmp.Compare(a.Text(), b.Text())
	})
}

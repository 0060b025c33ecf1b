package traceql

import (
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// conjuncts flattens a tree of && into its operands.
func conjuncts(e Expr, out []Expr) []Expr {
	if b, ok := e.(*BinaryExpr); ok && b.Op == "&&" {
		return conjuncts(b.RHS, conjuncts(b.LHS, out))
	}
	return append(out, e)
}

var flipped = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}

// comparison reads b as a field compared with a literal, the field on
// the left: a literal on the left swaps the sides and flips the
// operator. ok is false unless exactly one side is a literal (a literal
// on the left of an operator that does not flip, such as a regex match,
// is not read either way round).
func comparison(b *BinaryExpr) (field Expr, lit *Literal, op string, ok bool) {
	field, other, op := b.LHS, b.RHS, b.Op
	if l, isLit := field.(*Literal); isLit {
		if op, ok = flipped[op]; !ok {
			return nil, nil, "", false
		}
		field, other = other, l
	}
	lit, ok = other.(*Literal)
	if _, both := field.(*Literal); both {
		return nil, nil, "", false
	}
	return field, lit, op, ok
}

// pushdown derives a storage query from a filter expression. The storage
// query is a necessary condition: every span the expression matches also
// matches it, so the engine may evaluate the expression only on what the
// store returns. It reports how many conditions it pushed, which the
// planner uses as a selectivity estimate.
func pushdown(e Expr, start, end int64) (*storage.SpanQuery, int) {
	q := &storage.SpanQuery{Start: start, End: end}
	if e == nil {
		return q, 0
	}
	n := 0
	for _, c := range conjuncts(e, nil) {
		if a, ok := c.(*Attribute); ok {
			// An attribute alone holds where it is true.
			if pushAttr(q, a, "=", NewBool(true)) {
				n++
			}
			continue
		}
		b, ok := c.(*BinaryExpr)
		if !ok {
			continue
		}
		field, l, op, ok := comparison(b)
		if !ok {
			continue
		}
		switch f := field.(type) {
		case *IntrinsicRef:
			if pushIntrinsic(q, f.Intrinsic, op, l.Value) {
				n++
			}
		case *Attribute:
			if pushAttr(q, f, op, l.Value) {
				n++
			}
		}
	}
	return q, n
}

// coreFields lists the core fields expressions read; they must be
// coreOnly.
func coreFields(es ...Expr) storage.CoreFields {
	var f storage.CoreFields
	var walk func(Expr)
	walk = func(e Expr) {
		switch x := e.(type) {
		case *IntrinsicRef:
			switch x.Intrinsic {
			case IntrinsicDuration:
				f |= storage.FieldStart | storage.FieldDuration
			case IntrinsicName:
				f |= storage.FieldName
			case IntrinsicStatus:
				f |= storage.FieldStatus
			case IntrinsicKind:
				f |= storage.FieldKind
			case IntrinsicSpanID:
				f |= storage.FieldSpanID
			case IntrinsicTraceID:
				f |= storage.FieldTraceID
			case IntrinsicParentID:
				f |= storage.FieldParentSpanID
			}
		case *Attribute:
			f |= storage.FieldService
		case *BinaryExpr:
			walk(x.LHS)
			walk(x.RHS)
		case *UnaryExpr:
			walk(x.Expr)
		}
	}
	for _, e := range es {
		if e != nil {
			walk(e)
		}
	}
	return f
}

// exactPushdown reports whether pushdown(e) is not only necessary but
// sufficient: e is a conjunction of conditions the store applies exactly
// as TraceQL does (duration bounds, name, status, kind and trace ID
// equalities, resource.service.name equality). A span the store returns
// then matches e, and only its trace and start need reading. Attribute
// matchers are left out: their typing is the store's, not TraceQL's.
func exactPushdown(e Expr) bool {
	if e == nil {
		return true
	}
	for _, c := range conjuncts(e, nil) {
		b, ok := c.(*BinaryExpr)
		if !ok {
			return false
		}
		field, l, op, ok := comparison(b)
		if !ok {
			return false
		}
		// The store reads a zero bound and an empty name as no condition
		// at all, and a span's duration can be negative in bad data: only
		// bounds that push as a positive number are exact.
		switch f := field.(type) {
		case *IntrinsicRef:
			d := l.Value.N
			switch {
			case f.Intrinsic == IntrinsicDuration && (l.Value.Type == TypeDuration || l.Value.Type == TypeInt):
				switch {
				case (op == "=" || op == "<=" || op == ">=") && d > 0:
				case op == ">" && d >= 0:
				case op == "<" && d > 1:
				default:
					return false
				}
			case f.Intrinsic == IntrinsicName && op == "=" && l.Value.Type == TypeString && l.Value.S != "":
			case f.Intrinsic == IntrinsicStatus && op == "=" && l.Value.Type == TypeStatus:
			case f.Intrinsic == IntrinsicKind && op == "=" && l.Value.Type == TypeKind:
			default:
				return false
			}
		case *Attribute:
			if f.Parent || f.Scope != ScopeResource || f.Name != "service.name" || op != "=" || l.Value.Type != TypeString || l.Value.S == "" {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func pushIntrinsic(q *storage.SpanQuery, in Intrinsic, op string, v Static) bool {
	switch in {
	case IntrinsicDuration:
		if !v.Type.numeric() || v.Type == TypeFloat {
			return false
		}
		d := v.N
		switch op {
		case "=":
			q.MinDuration, q.MaxDuration = max(q.MinDuration, d), minNonZero(q.MaxDuration, d)
		case ">":
			q.MinDuration = max(q.MinDuration, d+1)
		case ">=":
			q.MinDuration = max(q.MinDuration, d)
		case "<":
			q.MaxDuration = minNonZero(q.MaxDuration, d-1)
		case "<=":
			q.MaxDuration = minNonZero(q.MaxDuration, d)
		default:
			return false
		}
		if q.MaxDuration < 0 {
			// Nothing can match; keep a bound the store can apply.
			q.MaxDuration = 0
			q.MinDuration = 1<<63 - 1
		}
		return true
	case IntrinsicName:
		if op == "=" && v.Type == TypeString {
			q.Name = v.S
			return true
		}
	case IntrinsicStatus:
		if op == "=" && v.Type == TypeStatus {
			q.Status, q.HasStatus = storage.StatusCode(v.N), true
			return true
		}
	case IntrinsicKind:
		if op == "=" && v.Type == TypeKind {
			q.Kind, q.HasKind = storage.SpanKind(v.N), true
			return true
		}
	case IntrinsicTraceID:
		if op == "=" && v.Type == TypeString {
			if id, err := storage.ParseTraceID(v.S); err == nil {
				q.TraceID = id
				return true
			}
		}
	}
	return false
}

func minNonZero(a, b int64) int64 {
	if a == 0 {
		return b
	}
	return min(a, b)
}

var storageOps = map[string]storage.Op{
	"=": storage.OpEqual, "!=": storage.OpNotEqual, "=~": storage.OpRegexp, "!~": storage.OpNotRegexp,
	">": storage.OpGreater, ">=": storage.OpGreaterEqual, "<": storage.OpLess, "<=": storage.OpLessEqual,
}

// storageScope maps an attribute reference to the store's scopes; ok is
// false for what the store cannot look up itself (events, links,
// instrumentation, parent attributes).
func storageScope(a *Attribute) (storage.Scope, bool) {
	if a.Parent {
		return 0, false
	}
	switch a.Scope {
	case ScopeSpan:
		return storage.ScopeSpan, true
	case ScopeResource:
		return storage.ScopeResource, true
	case ScopeNone:
		return storage.ScopeAny, true
	}
	return 0, false
}

func pushAttr(q *storage.SpanQuery, a *Attribute, op string, v Static) bool {
	scope, ok := storageScope(a)
	if !ok {
		return false
	}
	if v.Type == TypeNil {
		if op != "!=" {
			return false
		}
		m, err := storage.NewMatcher(scope, a.Name, storage.OpExists, storage.Value{})
		if err != nil {
			return false
		}
		q.Matchers = append(q.Matchers, m)
		return true
	}
	if scope == storage.ScopeResource && a.Name == "service.name" && op == "=" && v.Type == TypeString {
		q.ServiceName = v.S
		return true
	}
	var sv storage.Value
	switch v.Type {
	case TypeString:
		sv = storage.Str(v.S)
	case TypeInt:
		sv = storage.Int(v.N)
	case TypeFloat:
		sv = storage.Double(v.F)
	case TypeBool:
		sv = storage.Bool(v.N == 1)
	default:
		return false
	}
	sop, ok := storageOps[op]
	if !ok {
		return false
	}
	// The store compares strings with numbers by parsing them; TraceQL
	// does not. Ordered comparisons on strings stay in the engine.
	if v.Type == TypeString && sop >= storage.OpGreater {
		return false
	}
	m, err := storage.NewMatcher(scope, a.Name, sop, sv)
	if err != nil {
		return false
	}
	q.Matchers = append(q.Matchers, m)
	return true
}

// candidates returns storage queries whose union holds every span of every
// trace the spanset expression can match (a disjunction of necessary
// conditions).
func candidates(e SpansetExpr, start, end int64) ([]*storage.SpanQuery, int) {
	qs, n := candidateQueries(e, start, end)
	// Only the matching spans' trace IDs are read: the store may leave the
	// rest out, and still applies every condition.
	for _, q := range qs {
		q.Projection = storage.ProjectCore
	}
	return qs, n
}

func candidateQueries(e SpansetExpr, start, end int64) ([]*storage.SpanQuery, int) {
	switch x := e.(type) {
	case *SpansetFilter:
		q, n := pushdown(x.Expr, start, end)
		return []*storage.SpanQuery{q}, n
	case *SpansetOp:
		l, ln := candidateQueries(x.LHS, start, end)
		r, rn := candidateQueries(x.RHS, start, end)
		switch x.Op {
		case "||":
			if ln == 0 || rn == 0 {
				return []*storage.SpanQuery{{Start: start, End: end}}, 0
			}
			return append(l, r...), min(ln, rn)
		case "!>", "!>>", "!<", "!<<", "!~":
			return r, rn
		}
		// Both sides must match: either side's candidates will do; take
		// the more selective.
		if ln > rn {
			return l, ln
		}
		return r, rn
	case *Pipeline:
		if st, ok := x.Stages[0].(*SpansetStage); ok {
			return candidateQueries(st.Expr, start, end)
		}
	}
	return []*storage.SpanQuery{{Start: start, End: end}}, 0
}

// spanwise reports whether the query's spans can be decided span by span:
// one filter, optionally followed by select(), that uses no trace-level
// intrinsics or parent attributes. Such queries stream from the store
// without assembling traces.
func (q *Query) spanwise() (*SpansetFilter, bool) {
	st, ok := q.Pipeline.Stages[0].(*SpansetStage)
	if !ok {
		return nil, false
	}
	f, ok := st.Expr.(*SpansetFilter)
	if !ok {
		return nil, false
	}
	for _, s := range q.Pipeline.Stages[1:] {
		if _, ok := s.(*Select); !ok {
			return nil, false
		}
	}
	if f.Expr != nil && needsTrace(f.Expr) {
		return nil, false
	}
	if q.Metrics != nil {
		for _, b := range append([]Expr{q.Metrics.Attr}, q.Metrics.By...) {
			if b != nil && needsTrace(b) {
				return nil, false
			}
		}
		if c := q.Metrics.Compare; c != nil && c.Expr != nil && needsTrace(c.Expr) {
			return nil, false
		}
	}
	return f, true
}

func needsTrace(e Expr) bool {
	switch x := e.(type) {
	case *IntrinsicRef:
		return x.Intrinsic.traceLevel()
	case *Attribute:
		return x.Parent
	case *BinaryExpr:
		return needsTrace(x.LHS) || needsTrace(x.RHS)
	case *UnaryExpr:
		return needsTrace(x.Expr)
	}
	return false
}

// coreOnly reports whether the expressions read nothing but what
// storage.ProjectCore fills: IDs, name, kind, status, timing and
// resource.service.name. Queries like that let the store skip decoding
// attributes, events and links.
func coreOnly(es ...Expr) bool {
	for _, e := range es {
		if e == nil {
			continue
		}
		switch x := e.(type) {
		case *Literal:
		case *IntrinsicRef:
			switch x.Intrinsic {
			case IntrinsicDuration, IntrinsicName, IntrinsicStatus, IntrinsicKind, IntrinsicSpanID, IntrinsicTraceID, IntrinsicParentID:
			default:
				return false
			}
		case *Attribute:
			if x.Parent || x.Scope != ScopeResource || x.Name != "service.name" {
				return false
			}
		case *BinaryExpr:
			if !coreOnly(x.LHS, x.RHS) {
				return false
			}
		case *UnaryExpr:
			if !coreOnly(x.Expr) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

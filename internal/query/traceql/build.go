package traceql

// Queries built as data, for the APIs whose searches are field tests
// rather than TraceQL text (Jaeger's find traces): they run through the
// same engine, pushdown and limits as a parsed query, without quoting
// values into text and parsing them back.

// Cond tests one field of a span: Field Op Value, with Op one of
// = != < <= > >=.
type Cond struct {
	Field Expr
	Op    string
	Value Static
}

// AllOf is the query { c1 && c2 && ... }: the spans on which every
// condition holds, and the traces that have one. With no condition it
// matches every span. It is validated as a parsed query is.
func AllOf(conds ...Cond) (*Query, error) {
	var e Expr
	for _, c := range conds {
		var test Expr = &BinaryExpr{Op: c.Op, LHS: c.Field, RHS: &Literal{Value: c.Value}}
		if e != nil {
			test = &BinaryExpr{Op: "&&", LHS: e, RHS: test}
		}
		e = test
	}
	q := &Query{Pipeline: &Pipeline{Stages: []Stage{&SpansetStage{Expr: &SpansetFilter{Expr: e}}}}}
	if err := validate(q); err != nil {
		return nil, err
	}
	return q, nil
}

// IntrinsicField is a reference to the intrinsic i (duration, name, ...).
func IntrinsicField(i Intrinsic) Expr { return &IntrinsicRef{Intrinsic: i} }

// ResourceAttribute is resource.name.
func ResourceAttribute(name string) Expr { return &Attribute{Scope: ScopeResource, Name: name} }

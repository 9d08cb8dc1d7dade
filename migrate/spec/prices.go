package spec

import (
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Prices is what a store charges, for the estimate `ferry plan` prints (README,
// "Cost and time estimate"). Allowed under any source and under the target:
//
//	prices:
//	  currency: USD                  # default USD; one currency for the whole spec
//	  list_per_1000: 0.005           # LIST requests (a listing page)
//	  get_per_1000: 0.0004           # GET and HEAD
//	  put_per_1000: 0.005            # PUT, multipart parts (with create and complete), COPY
//	  delete_per_1000: 0             # DELETE
//	  egress_per_gib: 0.09           # bytes read out of the store
//	  storage_per_gib_month: 0.0255  # bytes kept at the store (the target's copies)
//
// Decisions where DESIGN.md is silent:
//   - Every price is a number of at least 0; a key left out costs nothing.
//   - currency is three letters (ISO 4217 style) and the same everywhere it is
//     written: totals add up prices of every store.
//   - Prices only feed the estimate: they are not part of the spec digest.
type Prices struct {
	Currency           string  `json:"currency"`
	ListPer1000        float64 `json:"list_per_1000,omitempty"`
	GetPer1000         float64 `json:"get_per_1000,omitempty"`
	PutPer1000         float64 `json:"put_per_1000,omitempty"`
	DeletePer1000      float64 `json:"delete_per_1000,omitempty"`
	EgressPerGiB       float64 `json:"egress_per_gib,omitempty"`
	StoragePerGiBMonth float64 `json:"storage_per_gib_month,omitempty"`
}

// DefaultCurrency is the currency of a price table that names none.
const DefaultCurrency = "USD"

var (
	priceKeys  = []string{"currency", "list_per_1000", "get_per_1000", "put_per_1000", "delete_per_1000", "egress_per_gib", "storage_per_gib_month"}
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
)

// prices parses a store's prices mapping (nil when absent or wrong).
func (p *parser) prices(n *yaml.Node, path string) *Prices {
	if isNull(n) {
		return nil
	}
	m, ok := p.fields(n, path, priceKeys...)
	if !ok {
		return nil
	}
	pr := &Prices{Currency: DefaultCurrency}
	good := true
	if e, ok := m["currency"]; ok && !isNull(e.val) {
		kp := joinKey(path, "currency")
		if v, ok := p.nonEmpty(e.val, kp); !ok {
			good = false
		} else if v = strings.ToUpper(strings.TrimSpace(v)); !currencyRE.MatchString(v) {
			p.add(e.val, kp, "must be a three-letter currency code like USD or EUR")
			good = false
		} else {
			pr.Currency = v
		}
	}
	for _, f := range []struct {
		key string
		v   *float64
	}{
		{"list_per_1000", &pr.ListPer1000}, {"get_per_1000", &pr.GetPer1000}, {"put_per_1000", &pr.PutPer1000},
		{"delete_per_1000", &pr.DeletePer1000}, {"egress_per_gib", &pr.EgressPerGiB}, {"storage_per_gib_month", &pr.StoragePerGiBMonth},
	} {
		e, ok := m[f.key]
		if !ok || isNull(e.val) {
			continue
		}
		kp := joinKey(path, f.key)
		if p.flagged[e.val] {
			good = false
			continue
		}
		if e.val.Kind != yaml.ScalarNode || (e.val.ShortTag() != "!!int" && e.val.ShortTag() != "!!float") {
			p.add(e.val, kp, "must be a price (a number like 0.005), not %s", kindName(e.val))
			good = false
			continue
		}
		v, err := strconv.ParseFloat(e.val.Value, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			p.add(e.val, kp, "must be a price of at least 0 (a number like 0.005)")
			good = false
			continue
		}
		*f.v = v
	}
	if !good {
		return nil
	}
	return pr
}

// checkCurrencies reports price tables whose currency differs from the first one's.
func (p *parser) checkCurrencies(s *Spec, nodes map[string]*yaml.Node) {
	first, firstAt := "", ""
	check := func(pr *Prices, at string) {
		if pr == nil {
			return
		}
		if first == "" {
			first, firstAt = pr.Currency, at
			return
		}
		if pr.Currency != first {
			p.add(nodes[at], at+".prices.currency", "is %s, but %s.prices is in %s: use one currency for every price table", pr.Currency, firstAt, first)
		}
	}
	for i := range s.Sources {
		check(s.Sources[i].Prices, idx("sources", i))
	}
	check(s.Target.Prices, "target")
}

package providers

import "strings"

// Caps is what one store can do beyond Store, resolved once when the store is opened
// or wrapped (as rclone's fs.Features): each optional capability is the value to call
// it on, nil when the store lacks it, and Features are the booleans it declares. A
// phase asks its store's Caps instead of type-asserting the store at every call.
//
// CapsOf fills it from a store by the rule As states: the capabilities on the
// request path (ConditionalDeleter, SoftDeleter, RangeLister, UncheckedOpener,
// Versioner) are taken from the store itself, never from a store it wraps, so a
// decorator that must see every request (dry run, fault injection, limits, the
// journal) is never bypassed; every decorator therefore implements exactly those of
// them its inner store implements. What a store reports about itself once per run
// (Features, Regioner, Recoverer, Retrier, Identifier, Principal) is not decorated
// and is found through Unwrap.
type Caps struct {
	Features

	ConditionalDeleter ConditionalDeleter
	SoftDeleter        SoftDeleter
	RangeLister        RangeLister
	UncheckedOpener    UncheckedOpener
	Versioner          Versioner

	Regioner   Regioner
	Recoverer  Recoverer
	Retrier    Retrier
	Identifier Identifier
	Principal  Principal
}

// Cap names one optional capability; a Cap value is a set of them.
type Cap uint16

// The optional capabilities, one bit each.
const (
	CapConditionalDelete Cap = 1 << iota // ConditionalDeleter
	CapSoftDelete                        // SoftDeleter
	CapRangeList                         // RangeLister
	CapUncheckedOpen                     // UncheckedOpener
	CapVersions                          // Versioner
	CapRegion                            // Regioner
	CapRecoverability                    // Recoverer
	CapRetries                           // Retrier
	CapIdentity                          // Identifier
	CapPrincipal                         // Principal

	// CapWrites are the capabilities that change a store: a dry run blocks them.
	CapWrites = CapConditionalDelete | CapSoftDelete
	// CapAll is every optional capability.
	CapAll = CapPrincipal<<1 - 1
)

var capNames = []string{"ConditionalDeleter", "SoftDeleter", "RangeLister", "UncheckedOpener",
	"Versioner", "Regioner", "Recoverer", "Retrier", "Identifier", "Principal"}

// String lists the set's interface names ("ConditionalDeleter|RangeLister"), "none"
// for the empty set.
func (c Cap) String() string {
	var names []string
	for i, n := range capNames {
		if c&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// CapsOf resolves s's capabilities (Fill). Call it once, on the outermost decorator,
// when the store is opened or wrapped.
func CapsOf(s Store) Caps {
	var c Caps
	if s == nil {
		return c
	}
	c.Features = FeaturesOf(s)
	c.ConditionalDeleter, _ = s.(ConditionalDeleter)
	c.SoftDeleter, _ = s.(SoftDeleter)
	c.RangeLister, _ = s.(RangeLister)
	c.UncheckedOpener, _ = s.(UncheckedOpener)
	c.Versioner, _ = s.(Versioner)
	c.Regioner, _ = As[Regioner](s)
	c.Recoverer, _ = As[Recoverer](s)
	c.Retrier, _ = As[Retrier](s)
	c.Identifier, _ = As[Identifier](s)
	c.Principal, _ = As[Principal](s)
	return c
}

// Has returns the set of optional capabilities c has.
func (c Caps) Has() Cap {
	var h Cap
	for i, ok := range []bool{c.ConditionalDeleter != nil, c.SoftDeleter != nil, c.RangeLister != nil,
		c.UncheckedOpener != nil, c.Versioner != nil, c.Regioner != nil, c.Recoverer != nil,
		c.Retrier != nil, c.Identifier != nil, c.Principal != nil} {
		if ok {
			h |= 1 << i
		}
	}
	return h
}

// Mask returns c with only the capabilities in keep: what a wrapper passes through
// of the store it wraps. The declared Features are kept.
func (c Caps) Mask(keep Cap) Caps {
	drop := func(b Cap) bool { return keep&b == 0 }
	if drop(CapConditionalDelete) {
		c.ConditionalDeleter = nil
	}
	if drop(CapSoftDelete) {
		c.SoftDeleter = nil
	}
	if drop(CapRangeList) {
		c.RangeLister = nil
	}
	if drop(CapUncheckedOpen) {
		c.UncheckedOpener = nil
	}
	if drop(CapVersions) {
		c.Versioner = nil
	}
	if drop(CapRegion) {
		c.Regioner = nil
	}
	if drop(CapRecoverability) {
		c.Recoverer = nil
	}
	if drop(CapRetries) {
		c.Retrier = nil
	}
	if drop(CapIdentity) {
		c.Identifier = nil
	}
	if drop(CapPrincipal) {
		c.Principal = nil
	}
	return c
}

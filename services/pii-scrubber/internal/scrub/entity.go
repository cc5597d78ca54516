package scrub

import (
	"fmt"
	"strings"
)

// Entity names accepted by Scrub and reported in findings. The first seven
// are the names used in Dapr's placeholders; the others follow their style.
const (
	// EntityEmail is an e-mail address, replaced by <EMAIL_ADDRESS>.
	EntityEmail = "EMAIL_ADDRESS"
	// EntityPhone is a telephone number, replaced by <PHONE_NUMBER>.
	EntityPhone = "PHONE_NUMBER"
	// EntityIP is an IPv4 or IPv6 address, replaced by <IP>.
	EntityIP = "IP"
	// EntityCreditCard is a payment card number, replaced by <CREDIT_CARD>.
	EntityCreditCard = "CREDIT_CARD"
	// EntityUSSSN is a formatted US social security number, replaced by <US_SSN>.
	EntityUSSSN = "US_SSN"
	// EntityIBAN is an international bank account number, replaced by <IBAN>.
	EntityIBAN = "IBAN"
	// EntityMAC is a MAC (EUI-48) address, replaced by <MAC_ADDRESS>.
	EntityMAC = "MAC_ADDRESS"
	// EntityCrypto is a Bitcoin address, replaced by <CRYPTO>.
	EntityCrypto = "CRYPTO"
	// EntitySecret is a credential: an API key with a well-known prefix, an
	// AWS access key id, a JWT, a PEM private key, a password in a URL or a
	// password=... assignment. It is replaced by <SECRET>.
	EntitySecret = "SECRET"
	// EntityUKNHS is a UK NHS number (mod 11), replaced by <UK_NHS>. Opt-in.
	EntityUKNHS = "UK_NHS"
	// EntityCASIN is a Canadian social insurance number (Luhn), replaced by
	// <CA_SIN>. Opt-in.
	EntityCASIN = "CA_SIN"
	// EntityESNIF is a Spanish DNI/NIF or NIE (mod 23 letter), replaced by
	// <ES_NIF>. Opt-in.
	EntityESNIF = "ES_NIF"
	// EntityINAadhaar is an Indian Aadhaar number (Verhoeff), replaced by
	// <IN_AADHAAR>. Opt-in.
	EntityINAadhaar = "IN_AADHAAR"
)

// entity is the internal code of an entity.
type entity uint8

const (
	entEmail entity = iota
	entPhone
	entIP
	entCard
	entSSN
	entIBAN
	entMAC
	entCrypto
	entSecret
	entNHS
	entSIN
	entNIF
	entAadhaar
	numEntities
)

func (e entity) name() string {
	switch e {
	case entEmail:
		return EntityEmail
	case entPhone:
		return EntityPhone
	case entIP:
		return EntityIP
	case entCard:
		return EntityCreditCard
	case entSSN:
		return EntityUSSSN
	case entIBAN:
		return EntityIBAN
	case entMAC:
		return EntityMAC
	case entCrypto:
		return EntityCrypto
	case entSecret:
		return EntitySecret
	case entNHS:
		return EntityUKNHS
	case entSIN:
		return EntityCASIN
	case entNIF:
		return EntityESNIF
	default:
		return EntityINAadhaar
	}
}

// defaultOn reports whether the entity is in the default set. The country
// identifiers are opt-in: their checksums are weak evidence on their own
// (one random number in 10 or 11 passes) and they matter only to some
// tenants.
func (e entity) defaultOn() bool { return e < entNHS }

// entityOf returns the entity called name.
func entityOf(name string) (entity, bool) {
	for e := range numEntities {
		if e.name() == name {
			return e, true
		}
	}
	return 0, false
}

// Entities returns the names of every entity Scrub knows, in a new slice.
func Entities() []string {
	out := make([]string, numEntities)
	for e := range numEntities {
		out[e] = e.name()
	}
	return out
}

// DefaultEntities returns the entities scrubbed when neither the service
// configuration nor the call names any, in a new slice: all but the opt-in
// country identifiers.
func DefaultEntities() []string {
	var out []string
	for e := range numEntities {
		if e.defaultOn() {
			out = append(out, e.name())
		}
	}
	return out
}

// entitySet is a bit set of entities.
type entitySet uint16

func (s entitySet) has(e entity) bool { return s&(1<<e) != 0 }

func (s entitySet) hasAny(es ...entity) bool {
	for _, e := range es {
		if s.has(e) {
			return true
		}
	}
	return false
}

func defaultSet() entitySet {
	var s entitySet
	for e := range numEntities {
		if e.defaultOn() {
			s |= 1 << e
		}
	}
	return s
}

// parseEntities returns the set named by names, or def when names is empty.
func parseEntities(names []string, def entitySet) (entitySet, error) {
	if len(names) == 0 {
		return def, nil
	}
	var set entitySet
	for _, n := range names {
		e, ok := entityOf(n)
		if !ok {
			return 0, fmt.Errorf("%w: %q", ErrUnknownEntity, n)
		}
		set |= 1 << e
	}
	return set, nil
}

// placeholderAt returns the end of the placeholder starting at byte i, or 0.
// Placeholders are <NAME>, <NAME_n> (tokenize mode) and <NAME:hex> (hash
// mode) for every entity name, so a scrubbed text is recognised whatever the
// mode that produced it.
func placeholderAt(t string, i int) int {
	if i >= len(t) || t[i] != '<' {
		return 0
	}
	j := i + 1
	for j < len(t) && j-i <= maxPlaceholder && (isUpper(t[j]) || isDigit(t[j]) || t[j] == '_') {
		j++
	}
	if j >= len(t) || j == i+1 || j-i > maxPlaceholder {
		return 0
	}
	name := t[i+1 : j]
	hashed := false
	switch t[j] {
	case '>':
	case ':':
		hashed = true
		k := j + 1
		for k < len(t) && k-j <= hashHexLen && isLowerHex(t[k]) {
			k++
		}
		if k-j-1 != hashHexLen || k >= len(t) || t[k] != '>' {
			return 0
		}
		j = k
	default:
		return 0
	}
	if _, ok := entityOf(name); ok {
		return j + 1
	}
	// A numbered token: NAME_n.
	u := strings.LastIndexByte(name, '_')
	if hashed || u <= 0 || u == len(name)-1 || name[u+1] == '0' {
		return 0
	}
	for k := u + 1; k < len(name); k++ {
		if !isDigit(name[k]) {
			return 0
		}
	}
	if _, ok := entityOf(name[:u]); ok {
		return j + 1
	}
	return 0
}

// maxPlaceholder bounds the bytes of a placeholder name, so recognising one
// costs constant time.
const maxPlaceholder = 32

// placeholderEndsAt reports whether a placeholder ends at byte i.
func placeholderEndsAt(t string, i int) bool {
	if i == 0 || t[i-1] != '>' {
		return false
	}
	lo := max(0, i-maxPlaceholder-hashHexLen-3)
	for k := i - 2; k >= lo; k-- {
		switch t[k] {
		case '<':
			return placeholderAt(t, k) == i
		case '>':
			return false
		}
	}
	return false
}

// placeholderStartsAt reports whether a placeholder starts at byte i.
func placeholderStartsAt(t string, i int) bool { return placeholderAt(t, i) > 0 }

func isUpper(c byte) bool { return c-'A' < 26 }

func isLowerHex(c byte) bool { return isDigit(c) || c-'a' < 6 }

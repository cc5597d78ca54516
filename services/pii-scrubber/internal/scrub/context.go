package scrub

import "strings"

// Context words: the words just before a candidate say what a number is.
// "Card 4111 1111 1111 1111" is a card, "order 4111 1111 1111 1111" is
// probably an order id that happens to pass Luhn (one random number in ten
// does). The nearest decisive word among the few before the candidate wins;
// words that say nothing ("number", "my", "is") are skipped.

const (
	contextBytes = 48 // how far back context words are looked for
	contextWords = 4  // how many words back
	boostUp      = 0.35
	boostDown    = 0.45
)

// context returns +1 when the nearest decisive word before byte s supports
// entity e, -1 when it argues against it, and 0 when there is none.
//
// Only words separated from the candidate, and from each other, by spaces
// and light punctuation count ("Order #: ", "Tel.: ", "(card) "). A digit,
// an '@', a placeholder or any other character ends the context. This keeps
// scrubbing idempotent: the words a decision rests on can never be part of
// another entity, which a first pass would have read and a second pass
// would find replaced by its placeholder.
func (sc *scanner) context(s int, e entity) int {
	return sc.contextWalk(s, e, false)
}

// labelled reports whether a label for entity e stands just before byte s:
// a word that supports e, with only filler words between it and the
// candidate ("Phone: ", "call me on ", "card number ", "Phone-Office: ",
// "Mi teléfono es "). The rules that accept candidates failing strict
// validation need it; any other word in between ("Phone sales reached
// 12 500 000") is not a label for the number.
func (sc *scanner) labelled(s int, e entity) bool {
	return sc.contextWalk(s, e, true) > 0
}

// contextWalk reads the words before byte s, nearest first. With strict
// set, only filler words may stand between the candidate and the decisive
// word. In a JSON string value, the words of the value's key follow when
// the walk reaches the start of the value undecided ("phone": "538 2274").
func (sc *scanner) contextWalk(s int, e entity, strict bool) int {
	lo := max(0, s-contextBytes)
	sc.steps += s - lo // the window it may read
	v, left, atStart := walkWords(sc.text, s, lo, e, strict, contextWords)
	if v == 0 && atStart && left > 0 && sc.key != "" {
		klo := max(0, len(sc.key)-contextBytes)
		sc.steps += len(sc.key) - klo
		v, _, _ = walkWords(sc.key, len(sc.key), klo, e, strict, left)
	}
	return v
}

// walkWords reads up to words words of t[lo:s] backwards from s. It
// returns the verdict, the words left unread and whether it reached the
// start of t.
func walkWords(t string, s, lo int, e entity, strict bool, words int) (verdict, left int, atStart bool) {
	i := s
	var buf [16]byte
	for ; words > 0; words-- {
		for i > lo && contextGap(t[i-1]) {
			i--
		}
		if i <= lo || !contextLetter(t[i-1]) {
			return 0, words, i == 0
		}
		end := i
		if t[end-1] >= 0x80 {
			// Scripts written without spaces glue the label to the rest
			// of the sentence: カード番号は, 電話番号：.
			if v := cjkLabel(e, t[lo:end]); v != 0 {
				return v, words, false
			}
		}
		for i > lo && contextLetter(t[i-1]) {
			i--
		}
		if (i == lo && lo > 0) || (i > 0 && !contextGap(t[i-1])) {
			return 0, 0, false // cut by the window, or glued to something else
		}
		w := t[i:end]
		if len(w) > len(buf) {
			if strict {
				return 0, 0, false
			}
			continue
		}
		for k := 0; k < len(w); k++ {
			c := w[k]
			if isUpper(c) {
				c |= 0x20
			}
			buf[k] = c
		}
		if v := contextVerdict(e, string(buf[:len(w)])); v != 0 {
			return v, words, false
		}
		if strict && !fillerWord(string(buf[:len(w)])) {
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// fillerWord reports words that may stand between a label and its value:
// "number", "my", "is", "me", "on", "at" and their kin, and qualifiers such
// as "office" or "home" (Phone-Office:, Home fax).
func fillerWord(w string) bool {
	switch w {
	case "number", "no", "nr", "num", "nos", "numbers", "my", "our", "your", "the", "a", "is", "are", "me", "us", "on", "at",
		"to", "of", "de", "di", "da", "do", "del", "la", "le", "el", "il", "es", "est", "ist", "meine", "mein", "mon", "ma",
		"mi", "mio", "mijn", "meu", "minha", "numéro", "número", "nummer", "numero", "n", "nº", "n°",
		"office", "home", "work", "private", "business", "main", "personal", "direct", "primary", "alt", "alternate",
		"for", "via", "or", "also", "please", "here", "it", "this", "new", "exp", "und", "et", "y", "e", "en", "op", "am", "au", "al":
		return true
	}
	return false
}

// cjkLabel is the meaning for entity e of a label in a script written
// without spaces that ends text, after dropping a topic particle or a
// full-width colon.
func cjkLabel(e entity, text string) int {
	for {
		switch {
		case strings.HasSuffix(text, "は"):
			text = text[:len(text)-len("は")]
			continue
		case strings.HasSuffix(text, "："):
			text = text[:len(text)-len("：")]
			continue
		}
		break
	}
	var labels []string
	switch e {
	case entPhone:
		labels = []string{"電話番号", "電話", "携帯番号", "携帯", "ファックス", "ファクス", "電話號碼", "手机", "手機"}
	case entCard:
		labels = []string{"カード番号", "カード", "信用卡", "卡号"}
	default:
		return 0
	}
	for _, l := range labels {
		if strings.HasSuffix(text, l) {
			return 1
		}
	}
	return 0
}

// contextLetter reports whether c may be part of a context word: an ASCII
// letter or a byte of a multi-byte character (Teléfono, Téléphone).
func contextLetter(c byte) bool { return isAlpha(c) || c >= 0x80 }

// contextGap reports whether c may separate context words.
func contextGap(c byte) bool {
	switch c {
	case ' ', '\t', ':', '#', '(', ')', '"', '\'', ',', '-', '=', '*', '[', ']', '.', '/', '_', '{':
		return true
	}
	return false
}

// adjust applies the context of byte s to a score.
func (sc *scanner) adjust(s int, e entity, score float64) float64 {
	switch sc.context(s, e) {
	case 1:
		return min(1, score+boostUp)
	case -1:
		return score - boostDown
	}
	return score
}

// contextVerdict is the meaning of one lower-case word for entity e.
func contextVerdict(e entity, w string) int {
	switch e {
	case entPhone:
		switch w {
		case "phone", "phones", "tel", "telephone", "call", "calling", "cell", "cellphone", "mobile", "mob", "fax",
			"whatsapp", "sms", "text", "ring", "dial", "contact", "hotline", "landline", "ph", "telefon", "telefono",
			"handy", "portable", "movil", "cellulare", "numero", "nummer", "mobiel", "celular",
			"desk", "direct", "reach", "tél", "téléphone", "teléfono", "móvil", "telefone", "telefoon", "tlf", "telf",
			"cel", "télécopie", "telefax", "phonenumber", "tele", "mobilephone", "workphone", "homephone",
			"mobilenumber", "telephonenumber", "faxnumber":
			return 1
		}
	case entCard:
		switch w {
		case "card", "cards", "credit", "debit", "visa", "mastercard", "amex", "discover", "jcb", "diners", "maestro",
			"cc", "pan", "unionpay", "kreditkarte", "carte", "tarjeta", "carta", "cartão", "cartao", "kaart", "crédito", "credito",
			"kaartnummer", "karte", "karten", "kartennummer", "creditcard", "cardnumber", "ccnum", "creditcardnumber", "pannumber":
			return 1
		}
	case entSSN:
		switch w {
		case "ssn", "social", "security", "ss", "ssa":
			return 1
		}
	case entIP:
		switch w {
		case "ip", "ipv", "host", "server", "address", "addr", "gateway", "dns", "subnet", "client", "from", "node",
			"ipaddress", "ipaddr", "clientip", "remoteaddr", "hostip", "serverip", "sourceip", "srcip", "dstip":
			return 1
		case "version", "ver", "v", "build", "release", "firmware", "rev", "revision", "patch", "update", "upgrade",
			"sdk", "driver", "kernel", "chrome", "python", "oid", "semver", "tag", "changelog",
			"section", "sec", "chapter", "ch", "clause", "article", "paragraph", "para", "appendix", "figure", "fig",
			"table", "step", "rule", "kapitel", "abschnitt", "chapitre", "sección", "seccion", "capítulo",
			"capitolo", "sezione", "hoofdstuk", "sectie", "versión", "versione", "versie", "versão", "clientversion",
			"appversion", "sdkversion", "osversion", "buildnumber":
			return -1
		}
		return 0
	case entNHS:
		switch w {
		case "nhs", "health", "patient":
			return 1
		}
	case entSIN:
		switch w {
		case "sin", "insurance", "social", "nas":
			return 1
		}
	case entAadhaar:
		switch w {
		case "aadhaar", "aadhar", "uid", "uidai":
			return 1
		}
	default:
		return 0
	}
	// Words that mark a number as a reference of some other kind.
	switch w {
	case "order", "orders", "invoice", "tracking", "track", "ref", "reference", "ticket", "transaction", "txn",
		"confirmation", "isbn", "serial", "sku", "part", "case", "booking", "shipment", "parcel", "awb",
		"barcode", "ean", "upc", "zip", "postcode", "version", "build", "batch", "lot", "policy", "claim", "receipt",
		"bestellung", "bestellnummer", "auftragsnummer", "rechnungsnummer", "sendungsnummer", "commande", "facture",
		"pedido", "factura", "referencia", "ordine", "fattura", "bestelling", "factuur", "zendingnummer", "fatura":
		return -1
	case "account", "acct", "customer", "member", "employee", "student", "id", "nhs", "sin", "aadhaar", "ssn", "nino",
		"passport", "licence", "license", "iban", "tin", "vat", "kundennummer",
		"card", "credit", "visa", "mastercard", "cc", "pan", "kreditkarte", "carte", "tarjeta", "karte":
		if e == entPhone {
			return -1 // another kind of identifier
		}
	}
	return 0
}

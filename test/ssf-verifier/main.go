// An independent verifier of trustfold's Security Event Tokens, in Go, with
// github.com/go-jose/go-jose/v4 (no trustfold code, no Node jose): it reads
// the transmitter's discovery document, fetches the keys from its jwks_uri,
// and checks each SET the way an SSF 1.0 receiver would.
//
// stdin:  {"discovery": URL, "issuer": ISS, "cases": [{"name", "token", "audience", "require_txn"}]}
// stdout: {"discovery": {"ok", "error", "keys"}, "results": [{"name", "ok", "error", "event_type", "kid", "alg"}]}
//
// Per SET: a compact JWS with exactly one signature by ES256 or EdDSA, header
// typ "secevent+jwt" and a kid found in the JWKS (whose alg must match), the
// signature verifying with that key; claims iss (the discovery issuer), jti,
// iat (an integer, not in the future), aud (string or array naming the
// audience), txn when asked, a sub_id of a known RFC 9493 format with the
// members that format requires (complex: each member itself a valid simple
// subject), exactly one event whose payload is an object, and neither sub
// nor exp. CAEP session-revoked and risk-level-change payloads, and SSF
// stream-updated and verification payloads, are checked against the fields
// those specifications require.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

type input struct {
	Discovery string `json:"discovery"`
	Issuer    string `json:"issuer"`
	Cases     []struct {
		Name       string `json:"name"`
		Token      string `json:"token"`
		Audience   string `json:"audience"`
		RequireTxn bool   `json:"require_txn"`
	} `json:"cases"`
}

type result struct {
	Name      string `json:"name"`
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	EventType string `json:"event_type,omitempty"`
	Kid       string `json:"kid,omitempty"`
	Alg       string `json:"alg,omitempty"`
}

type discoveryResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Keys  int    `json:"keys"`
}

const (
	caep          = "https://schemas.openid.net/secevent/caep/event-type/"
	ssf           = "https://schemas.openid.net/secevent/ssf/event-type/"
	typSecEvent   = "secevent+jwt"
	maxClockSkewS = 60
)

var client = &http.Client{Timeout: 10 * time.Second}

func getJSON(url string, into any) error {
	res, err := client.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d", url, res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	return json.Unmarshal(body, into)
}

func loadKeys(discovery, issuer string) (*jose.JSONWebKeySet, error) {
	var meta map[string]any
	if err := getJSON(discovery, &meta); err != nil {
		return nil, err
	}
	if meta["spec_version"] != "1_0" {
		return nil, fmt.Errorf("spec_version %v, want 1_0", meta["spec_version"])
	}
	if meta["issuer"] != issuer {
		return nil, fmt.Errorf("discovery issuer %v, want %s", meta["issuer"], issuer)
	}
	jwksURI, _ := meta["jwks_uri"].(string)
	if jwksURI == "" {
		return nil, errors.New("discovery has no jwks_uri")
	}
	var set jose.JSONWebKeySet
	if err := getJSON(jwksURI, &set); err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("the JWKS has no keys")
	}
	for _, k := range set.Keys {
		switch {
		case !k.Valid():
			return nil, fmt.Errorf("key %q is not valid", k.KeyID)
		case !k.IsPublic():
			return nil, fmt.Errorf("key %q is not a public key (private material published)", k.KeyID)
		case k.KeyID == "":
			return nil, errors.New("a key has no kid")
		case k.Use != "sig":
			return nil, fmt.Errorf("key %q has use %q, want sig", k.KeyID, k.Use)
		case k.Algorithm != string(jose.ES256) && k.Algorithm != string(jose.EdDSA):
			return nil, fmt.Errorf("key %q has alg %q, want ES256 or EdDSA", k.KeyID, k.Algorithm)
		}
	}
	return &set, nil
}

func str(m map[string]any, k string) (string, bool) {
	v, ok := m[k].(string)
	return v, ok && v != ""
}

func integer(m map[string]any, k string) (int64, error) {
	n, ok := m[k].(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s is not a number", k)
	}
	i, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("%s is not an integer (NumericDate)", k)
	}
	return i, nil
}

// RFC 9493 simple subjects and the members each requires.
var simpleFormats = map[string][]string{
	"account":           {"uri"},
	"email":             {"email"},
	"iss_sub":           {"iss", "sub"},
	"opaque":            {"id"},
	"phone_number":      {"phone_number"},
	"did":               {"url"},
	"uri":               {"uri"},
	"aliases":           {},
	"jwt_id":            {"iss", "jti"},
	"saml_assertion_id": {"issuer", "assertion_id"},
}

var complexMembers = []string{"user", "device", "session", "application", "tenant", "org_unit", "group"}

func checkSimple(m map[string]any) error {
	f, _ := str(m, "format")
	need, known := simpleFormats[f]
	if !known {
		return fmt.Errorf("unknown subject format %q", f)
	}
	for _, k := range need {
		if _, ok := str(m, k); !ok {
			return fmt.Errorf("%s subject without %s", f, k)
		}
	}
	return nil
}

func checkSubject(raw any) (map[string]any, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, errors.New("sub_id is missing or not an object")
	}
	if m["format"] != "complex" {
		return m, checkSimple(m)
	}
	n := 0
	for _, k := range complexMembers {
		v, present := m[k]
		if !present {
			continue
		}
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("complex subject member %s is not an object", k)
		}
		if err := checkSimple(mm); err != nil {
			return nil, fmt.Errorf("complex subject member %s: %w", k, err)
		}
		n++
	}
	if n == 0 {
		return nil, errors.New("complex subject with no member")
	}
	return m, nil
}

func checkEvent(typ string, ev map[string]any, sub map[string]any) error {
	switch typ {
	case caep + "session-revoked":
		_, err := integer(ev, "event_timestamp")
		return err
	case caep + "risk-level-change":
		if _, err := integer(ev, "event_timestamp"); err != nil {
			return err
		}
		lvl, _ := str(ev, "current_level")
		if lvl != "LOW" && lvl != "MEDIUM" && lvl != "HIGH" {
			return fmt.Errorf("risk-level-change current_level %q", lvl)
		}
		if p, ok := str(ev, "principal"); !ok {
			return errors.New("risk-level-change without principal")
		} else if p != "USER" && p != "DEVICE" && p != "SESSION" && p != "TENANT" && p != "ORG_UNIT" && p != "GROUP" {
			return fmt.Errorf("risk-level-change principal %q", p)
		}
		if prev, present := ev["previous_level"]; present && prev != "LOW" && prev != "MEDIUM" && prev != "HIGH" {
			return fmt.Errorf("risk-level-change previous_level %v", prev)
		}
	case ssf + "stream-updated":
		s, _ := str(ev, "status")
		if s != "enabled" && s != "paused" && s != "disabled" {
			return fmt.Errorf("stream-updated status %q", s)
		}
		fallthrough
	case ssf + "verification":
		if sub["format"] != "opaque" {
			return errors.New("a stream event's sub_id must be opaque (the stream id)")
		}
	}
	return nil
}

func verify(token, issuer, audience string, requireTxn bool, keys *jose.JSONWebKeySet) (res result) {
	fail := func(format string, a ...any) result {
		res.OK = false
		res.Error = fmt.Sprintf(format, a...)
		return res
	}
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		return fail("not a JWS by ES256/EdDSA: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return fail("%d signatures, want 1", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	res.Kid, res.Alg = h.KeyID, h.Algorithm
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != typSecEvent {
		return fail("header typ %q, want %s", typ, typSecEvent)
	}
	found := keys.Key(h.KeyID)
	if len(found) != 1 {
		return fail("kid %q: %d keys in the JWKS", h.KeyID, len(found))
	}
	if found[0].Algorithm != h.Algorithm {
		return fail("header alg %s, key alg %s", h.Algorithm, found[0].Algorithm)
	}
	payload, err := jws.Verify(found[0])
	if err != nil {
		return fail("signature: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	var c map[string]any
	if err := dec.Decode(&c); err != nil {
		return fail("claims are not a JSON object: %v", err)
	}
	if c["iss"] != issuer {
		return fail("iss %v, want %s", c["iss"], issuer)
	}
	if _, ok := str(c, "jti"); !ok {
		return fail("no jti")
	}
	iat, err := integer(c, "iat")
	if err != nil {
		return fail("%v", err)
	}
	if iat > time.Now().Unix()+maxClockSkewS {
		return fail("iat %d is in the future", iat)
	}
	switch aud := c["aud"].(type) {
	case string:
		if aud != audience {
			return fail("aud %q, want %q", aud, audience)
		}
	case []any:
		named := false
		for _, a := range aud {
			named = named || a == audience
		}
		if !named {
			return fail("aud %v does not name %q", aud, audience)
		}
	default:
		return fail("aud missing or neither string nor array")
	}
	if _, ok := str(c, "txn"); requireTxn && !ok {
		return fail("no txn")
	}
	for _, banned := range []string{"sub", "exp"} {
		if _, present := c[banned]; present {
			return fail("claim %s must not be present in a SET (SSF 1.0)", banned)
		}
	}
	sub, err := checkSubject(c["sub_id"])
	if err != nil {
		return fail("%v", err)
	}
	events, ok := c["events"].(map[string]any)
	if !ok {
		return fail("events missing or not an object")
	}
	if len(events) != 1 {
		return fail("events has %d members, want exactly 1", len(events))
	}
	for typ, ev := range events {
		res.EventType = typ
		payload, ok := ev.(map[string]any)
		if !ok {
			return fail("event %s payload is not an object", typ)
		}
		if err := checkEvent(typ, payload, sub); err != nil {
			return fail("%v", err)
		}
	}
	res.OK = true
	return res
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "ssf-verifier: bad input:", err)
		os.Exit(2)
	}
	out := struct {
		Discovery discoveryResult `json:"discovery"`
		Results   []result        `json:"results"`
	}{Results: []result{}}
	keys, err := loadKeys(in.Discovery, in.Issuer)
	if err != nil {
		out.Discovery = discoveryResult{Error: err.Error()}
	} else {
		out.Discovery = discoveryResult{OK: true, Keys: len(keys.Keys)}
		for _, c := range in.Cases {
			r := verify(c.Token, in.Issuer, c.Audience, c.RequireTxn, keys)
			r.Name = c.Name
			out.Results = append(out.Results, r)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(2)
	}
}

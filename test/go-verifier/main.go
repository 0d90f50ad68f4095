// An independent verifier of trustfold's audit log, in Go, with the
// transparency-dev and Go checksum-database libraries: inclusion and
// consistency proofs with github.com/transparency-dev/merkle (RFC 6962
// hashing), signed checkpoints with golang.org/x/mod/sumdb/note.
//
// Reads {"cases":[…]} as JSON on stdin, writes one {"name","ok","error"} per
// case as a JSON array on stdout. Case types:
//
//	inclusion    index, size, leaf_hash, proof, root (hashes base64)
//	consistency  size1, size2, proof, root1, root2
//	leaf         leaf_bytes (base64), leaf_hash: is leaf_hash the RFC 6962 hash of the bytes
//	checkpoint   note, key (verifier key), origin: a signed note by that key whose
//	             text is a checkpoint of that origin; size and root, when given, must match
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

type testCase struct {
	Name     string      `json:"name"`
	Type     string      `json:"type"`
	Index    json.Number `json:"index"`
	Size     json.Number `json:"size"`
	Size1    json.Number `json:"size1"`
	Size2    json.Number `json:"size2"`
	LeafHash string      `json:"leaf_hash"`
	Leaf     string      `json:"leaf_bytes"`
	Proof    []string    `json:"proof"`
	Root     string      `json:"root"`
	Root1    string      `json:"root1"`
	Root2    string      `json:"root2"`
	Note     string      `json:"note"`
	Key      string      `json:"key"`
	Origin   string      `json:"origin"`
}

type result struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func b64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return []byte(s) // not base64: a value no check accepts
	}
	return b
}

func hashes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = b64(s)
	}
	return out
}

// checkpoint parses a C2SP tlog-checkpoint body: origin, size, base64 root, then optional extension lines.
func checkpoint(text string) (string, uint64, []byte, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return "", 0, nil, errors.New("malformed checkpoint")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return "", 0, nil, errors.New("malformed checkpoint size")
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return "", 0, nil, errors.New("malformed checkpoint root hash")
	}
	return lines[0], size, root, nil
}

// u64 reads a JSON number as a uint64; one that is not (a float from a
// rounded 2^64-1, say) is an error, as no proof can be checked against it.
func u64(n json.Number) (uint64, error) {
	if n == "" {
		return 0, nil
	}
	return strconv.ParseUint(string(n), 10, 64)
}

func check(c testCase) error {
	h := rfc6962.DefaultHasher
	var nums [4]uint64
	for i, n := range []json.Number{c.Index, c.Size, c.Size1, c.Size2} {
		v, err := u64(n)
		if err != nil {
			return fmt.Errorf("not a uint64: %s", n)
		}
		nums[i] = v
	}
	index, size, size1, size2 := nums[0], nums[1], nums[2], nums[3]
	switch c.Type {
	case "inclusion":
		return proof.VerifyInclusion(h, index, size, b64(c.LeafHash), hashes(c.Proof), b64(c.Root))
	case "consistency":
		return proof.VerifyConsistency(h, size1, size2, hashes(c.Proof), b64(c.Root1), b64(c.Root2))
	case "leaf":
		if !bytes.Equal(h.HashLeaf(b64(c.Leaf)), b64(c.LeafHash)) {
			return errors.New("leaf hash does not match the leaf bytes")
		}
		return nil
	case "checkpoint":
		v, err := note.NewVerifier(c.Key)
		if err != nil {
			return err
		}
		n, err := note.Open([]byte(c.Note), note.VerifierList(v))
		if err != nil {
			return err
		}
		origin, cpSize, root, err := checkpoint(n.Text)
		if err != nil {
			return err
		}
		if origin != c.Origin {
			return fmt.Errorf("origin %q, want %q", origin, c.Origin)
		}
		if c.Root != "" && (cpSize != size || !bytes.Equal(root, b64(c.Root))) {
			return errors.New("checkpoint size/root differ from the ones expected")
		}
		return nil
	}
	return fmt.Errorf("unknown case type %q", c.Type)
}

func main() {
	var in struct {
		Cases []testCase `json:"cases"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "go-verifier:", err)
		os.Exit(2)
	}
	out := make([]result, 0, len(in.Cases))
	for _, c := range in.Cases {
		r := result{Name: c.Name, OK: true}
		if err := check(c); err != nil {
			r.OK, r.Error = false, err.Error()
		}
		out = append(out, r)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "go-verifier:", err)
		os.Exit(2)
	}
}

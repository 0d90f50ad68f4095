// Builds the independent Go verifier of the audit log (test/go-verifier:
// github.com/transparency-dev/merkle + golang.org/x/mod/sumdb/note) into
// .cache/go-verifier/ (see go-build.mjs).
import { buildGoTool } from './go-build.mjs';

buildGoTool({ name: 'go-verifier', what: 'the Go cross-check of the audit log proofs' });

// Builds the independent Go verifier of trustfold's SETs (test/ssf-verifier:
// github.com/go-jose/go-jose/v4 from the Go module proxy) into
// .cache/ssf-verifier/ (see go-build.mjs).
import { buildGoTool } from './go-build.mjs';

buildGoTool({ name: 'ssf-verifier', what: 'the Go (go-jose) cross-check of the SSF SETs' });

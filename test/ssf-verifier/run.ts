// Runs the Go (go-jose) SET verifier built by scripts/ssf-verifier-build.mjs.
// Tests skip with `SSF_VERIFIER_SKIP` as their reason when it is not built.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SSF_VERIFIER_BIN = fileURLToPath(new URL('../../.cache/ssf-verifier/ssf-verifier', import.meta.url));
export const SSF_VERIFIER_SKIP: string | false = existsSync(SSF_VERIFIER_BIN)
  ? false
  : `the Go SET verifier is not built (${SSF_VERIFIER_BIN}): install Go and run node scripts/ssf-verifier-build.mjs`;

export type GoCase = { name: string; token: string; audience: string; require_txn?: boolean };
export type GoResult = { name: string; ok: boolean; error?: string; event_type?: string; kid?: string; alg?: string };
export type GoOutput = { discovery: { ok: boolean; error?: string; keys: number }; results: GoResult[] };

/** Verifies `cases` with go-jose against the keys the discovery document's jwks_uri serves. */
export const goVerify = (discovery: string, issuer: string, cases: GoCase[]): Promise<GoOutput> =>
  new Promise((resolve, reject) => {
    const child = spawn(SSF_VERIFIER_BIN, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`ssf-verifier exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as GoOutput);
    });
    child.stdin.end(JSON.stringify({ discovery, issuer, cases }));
  });

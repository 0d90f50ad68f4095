// The leaf rule (RFC 8785 JCS) and C2SP signed notes / checkpoints, against
// the vectors of RFC 8785 and golang.org/x/mod/sumdb/note's tests.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJson, type Json } from '../../schemas/audit-log/jcs.ts';
import { leafBytes, leafHashOf } from '../../schemas/audit-log/leaf.ts';
import {
  formatCheckpoint,
  generateSignerKey,
  keyId,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseSignerKey,
  parseVerifierKey,
  signNote,
  verifierKey,
  type Signer,
  type Verifier,
} from '../../services/audit-log/note.ts';

describe('RFC 8785 canonical JSON', () => {
  it('serialises the RFC 8785 section 3.2.2 example', () => {
    const input = JSON.parse('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}') as Json;
    assert.equal(canonicalJson(input), '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}');
  });

  it('sorts members by UTF-16 code units (section 3.2.3)', () => {
    const input = { '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' };
    const values = [...canonicalJson(input).matchAll(/:"([^"]*)"/g)].map((m) => m[1]);
    assert.deepEqual(values, ['Carriage Return', 'One', 'Control', 'Latin Small Letter O With Diaeresis', 'Euro Sign', 'Emoji: Grinning Face', 'Hebrew Letter Dalet With Dagesh']);
  });

  it('refuses what JSON cannot carry', () => {
    assert.throws(() => canonicalJson(Number.NaN));
    assert.throws(() => canonicalJson({ a: Number.POSITIVE_INFINITY }));
  });
});

describe('the leaf rule', () => {
  const kafka = { topic: 'trustfold.decisions.v1', partition: 3, offset: '42' };
  const record = { type: 'decision', event_id: '0b7c7f4e-7f55-4b6e-9d5c-2f9f3f1f0a11', decision: { effect: 'deny', reasons: ['frozen'] } };

  it('is JCS of {v, kind, kafka, record}, independent of member order', () => {
    assert.equal(
      new TextDecoder().decode(leafBytes({ kind: 'decision', kafka, record })),
      '{"kafka":{"offset":"42","partition":3,"topic":"trustfold.decisions.v1"},"kind":"decision","record":{"decision":{"effect":"deny","reasons":["frozen"]},"event_id":"0b7c7f4e-7f55-4b6e-9d5c-2f9f3f1f0a11","type":"decision"},"v":1}',
    );
    const reordered = { decision: { reasons: ['frozen'], effect: 'deny' }, event_id: record.event_id, type: 'decision' };
    assert.deepEqual(leafHashOf({ kind: 'decision', kafka, record: reordered }), leafHashOf({ kind: 'decision', kafka, record }));
  });

  it('changes with any field, the kind and the position', () => {
    const base = leafHashOf({ kind: 'decision', kafka, record });
    assert.notDeepEqual(leafHashOf({ kind: 'decision', kafka, record: { ...record, decision: { effect: 'allow', reasons: ['frozen'] } } }), base);
    assert.notDeepEqual(leafHashOf({ kind: 'signal', kafka, record }), base);
    assert.notDeepEqual(leafHashOf({ kind: 'decision', kafka: { ...kafka, offset: '43' }, record }), base);
  });
});

describe('signed notes (golang.org/x/mod/sumdb/note vectors)', () => {
  const skey = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
  const vkey = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
  const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
  const signed = `${text}\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;
  const signer = (): Signer => {
    const s = parseSignerKey(skey);
    assert.ok(s.ok);
    return s.signer;
  };
  const verifier = (k = vkey): Verifier => {
    const v = parseVerifierKey(k);
    assert.ok(v.ok, k);
    return v.verifier;
  };

  it('derives the key id and the verifier key from the signer key', () => {
    const s = signer();
    assert.equal(s.keyId, 0xc74f20a3);
    assert.equal(keyId('PeterNeumann', s.publicKey), 0xc74f20a3);
    assert.equal(verifierKey(s), vkey);
  });

  it('signs exactly as note.Sign does (Ed25519 is deterministic)', () => {
    assert.equal(signNote(text, signer()), signed);
  });

  it('opens a good note and refuses a changed text, a changed signature or an unknown key', () => {
    const opened = openNote(signed, [verifier()]);
    assert.ok(opened.ok);
    assert.equal(opened.note.text, text);
    assert.equal(openNote(signed.replace('cryptography', 'cryptographY'), [verifier()]).ok, false);
    assert.equal(openNote(signed.replace('x08go', 'x08gp'), [verifier()]).ok, false);
    assert.equal(openNote(signed, [verifier('EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop')]).ok, false);
  });

  it('refuses keys whose id does not match', () => {
    assert.equal(parseVerifierKey('PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW').ok, false);
    assert.equal(parseSignerKey('PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz').ok, false);
  });

  it('generates keys that round-trip', () => {
    const s = parseSignerKey(generateSignerKey('trustfold.local/audit'));
    assert.ok(s.ok);
    const v = parseVerifierKey(verifierKey(s.signer));
    assert.ok(v.ok);
    assert.ok(openNote(signNote('hello\n', s.signer), [v.verifier]).ok);
  });
});

describe('tlog checkpoints', () => {
  const root = new Uint8Array(32).fill(7);
  it('formats origin, size and base64 root, and parses them back', () => {
    const text = formatCheckpoint({ origin: 'trustfold.local/audit/trustfold.decisions.v1/0', size: 12, root });
    assert.equal(text, `trustfold.local/audit/trustfold.decisions.v1/0\n12\n${Buffer.from(root).toString('base64')}\n`);
    const p = parseCheckpoint(text);
    assert.ok(p.ok);
    assert.equal(p.checkpoint.size, 12);
    assert.deepEqual(p.checkpoint.root, root);
  });

  it('refuses malformed checkpoints', () => {
    for (const bad of ['o\n-1\nAAAA\n', 'o\n01\nAAAA\n', 'o\n1\nAAAA\n', '\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n', 'o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=']) {
      assert.equal(parseCheckpoint(bad).ok, false, JSON.stringify(bad));
    }
  });

  it('opens a signed checkpoint', () => {
    const s = parseSignerKey(generateSignerKey('k'));
    assert.ok(s.ok);
    const v = parseVerifierKey(verifierKey(s.signer));
    assert.ok(v.ok);
    const note = signNote(formatCheckpoint({ origin: 'o', size: 3, root }), s.signer);
    const c = openCheckpoint(note, [v.verifier]);
    assert.ok(c.ok);
    assert.equal(c.checkpoint.size, 3);
    assert.equal(openCheckpoint(note.replace('\n3\n', '\n4\n'), [v.verifier]).ok, false);
  });
});

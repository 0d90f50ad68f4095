// Kafka security settings: parsed from the environment with precise errors,
// turned into kafkajs client options (SASL, TLS with PEM files read).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseConfig } from '../../services/lib/config.ts';
import { kafkaSecurityOptions } from '../../services/lib/kafka.ts';

const security = (env: Record<string, string>) => {
  const r = parseConfig(env);
  assert.ok(r.ok, JSON.stringify(r.ok ? null : r.error));
  return r.value.kafka.security;
};
const errorsOf = (env: Record<string, string>) => {
  const r = parseConfig(env);
  assert.ok(!r.ok);
  return r.error.map((e) => e.path);
};

describe('Kafka security config', () => {
  test('none by default: a plaintext client', () => {
    assert.deepEqual(security({}), { sasl: undefined, tls: undefined });
    assert.deepEqual(kafkaSecurityOptions(security({})), {});
  });

  test('SCRAM and PLAIN need mechanism, user and password together', () => {
    const s = security({ KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_USERNAME: 'sink', KAFKA_SASL_PASSWORD: 'pw' });
    assert.deepEqual(kafkaSecurityOptions(s), { sasl: { mechanism: 'scram-sha-512', username: 'sink', password: 'pw' } });
    assert.deepEqual(errorsOf({ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'sink' }), ['KAFKA_SASL_PASSWORD']);
    assert.deepEqual(errorsOf({ KAFKA_SASL_USERNAME: 'sink', KAFKA_SASL_PASSWORD: 'pw' }), ['KAFKA_SASL_MECHANISM']);
    assert.deepEqual(errorsOf({ KAFKA_SASL_MECHANISM: 'gssapi', KAFKA_SASL_USERNAME: 'sink', KAFKA_SASL_PASSWORD: 'pw' }), ['KAFKA_SASL_MECHANISM']);
  });

  test('TLS: on with KAFKA_TLS or any PEM file; the files are read into the client options; verification on unless turned off', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tf-tls-'));
    try {
      for (const f of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(dir, f), `-----${f}-----`);
      assert.deepEqual(kafkaSecurityOptions(security({ KAFKA_TLS: 'true' })), { ssl: { rejectUnauthorized: true } });
      const s = security({ KAFKA_TLS_CA_FILE: join(dir, 'ca.pem'), KAFKA_TLS_CERT_FILE: join(dir, 'cert.pem'), KAFKA_TLS_KEY_FILE: join(dir, 'key.pem'), KAFKA_TLS_REJECT_UNAUTHORIZED: 'false' });
      const o = kafkaSecurityOptions(s);
      assert.ok(typeof o.ssl === 'object');
      assert.equal(o.ssl.rejectUnauthorized, false);
      assert.deepEqual((o.ssl.ca as Buffer[]).map((b) => b.toString()), ['-----ca.pem-----']);
      assert.equal(String(o.ssl.cert), '-----cert.pem-----');
      assert.equal(String(o.ssl.key), '-----key.pem-----');
      assert.deepEqual(errorsOf({ KAFKA_TLS_CERT_FILE: join(dir, 'cert.pem') }), ['KAFKA_TLS_KEY_FILE']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('audit retention is bounded by the DateTime range of the TTL', () => {
    assert.deepEqual(errorsOf({ TRUSTFOLD_AUDIT_TTL_DAYS: '36500' }), ['TRUSTFOLD_AUDIT_TTL_DAYS']);
  });
});

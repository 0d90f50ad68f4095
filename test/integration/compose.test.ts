// docker-compose.yml is checked by Debian's docker-compose (no engine needed):
// the file parses, every role is there and gets its configuration. In this
// tier because the first run may install docker-compose with apt-get (network);
// skipped, saying why, where it is missing and cannot be installed.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';

const ensure = spawnSync('bash', ['scripts/ensure-docker-compose.sh'], { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
const unavailable = ensure.status === 0 ? false : `docker-compose unavailable: ${ensure.stderr.trim() || `exit ${ensure.status}`}`;

test('docker-compose.yml passes `docker-compose config` and runs every role', { skip: unavailable }, () => {
  const env = { ...process.env, TRUSTFOLD_JWT_SECRET: 'compose-test-secret-compose-test-secret', TRUSTFOLD_KAFKA_PASSWORD: 'client-pw', TRUSTFOLD_KAFKA_BROKER_PASSWORD: 'broker-pw' };
  const out = execFileSync('docker-compose', ['-f', 'docker-compose.yml', 'config'], { env, encoding: 'utf8' });
  for (const role of ['ingest', 'projector', 'audit-sink', 'query']) {
    assert.match(out, new RegExp(`- --role\\n\\s+- ${role}\\b|- ${role}\\n`), `role ${role} is started`);
  }
  assert.match(out, /KAFKA_BROKERS: kafka:9092/);
  // Every role authenticates to Kafka; the broker has no unauthenticated client listener.
  assert.match(out, /KAFKA_SASL_MECHANISM: plain/);
  assert.match(out, /KAFKA_SASL_PASSWORD: client-pw/);
  assert.match(out, /KAFKA_LISTENERS: SASL_PLAINTEXT:\/\/:9092,CONTROLLER:\/\/:9093/);
  assert.match(out, /KAFKA_ADVERTISED_LISTENERS: SASL_PLAINTEXT:\/\/kafka:9092/);
  assert.match(out, /CLICKHOUSE_URL: http:\/\/clickhouse:8123/);
  // Without a JWT secret the stack refuses to start rather than run open.
  const { TRUSTFOLD_JWT_SECRET: _secret, ...bare } = env;
  const r = spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { env: bare, encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /TRUSTFOLD_JWT_SECRET/);
  // Nor without the Kafka password.
  const { TRUSTFOLD_KAFKA_PASSWORD: _password, ...noKafka } = env;
  const k = spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { env: noKafka, encoding: 'utf8' });
  assert.notEqual(k.status, 0);
  assert.match(k.stderr, /TRUSTFOLD_KAFKA_PASSWORD/);
});

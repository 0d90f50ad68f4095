// Lint runs in `npm test`: type-aware rules catch un-awaited promises (a lost
// Kafka ack or ClickHouse insert is a lost event) and keep type imports explicit.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', '.data/**', '.cache/**', 'dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test registers tests synchronously; its returned promises are the runner's.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The pure modules (the fold, reconciliation, the story, SQL builders, the
    // engine mappings, the sink's batching, ingest admission and body parsing,
    // the record keys) take time, ids and lookups as arguments: no Node I/O, no
    // Kafka, no ClickHouse. node:crypto stays allowed — a digest is a pure
    // function of its input. (The rule sees direct imports only.)
    files: [
      'services/projector/evolve.ts',
      'services/projector/fold/**/*.ts',
      'services/projector/reconcile.ts',
      'services/query/story.ts',
      'services/query/sql.ts',
      'services/adapters/mapping.ts',
      'services/adapters/mapping/**/*.ts',
      'services/audit-sink/batch.ts',
      'services/ingest/admit.ts',
      'services/ingest/body.ts',
      'schemas/keys.ts',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['kafkajs', '@clickhouse/client', 'chdb', 'pino', 'fastify'],
          patterns: [
            { regex: '^node:(?!crypto$)', message: 'pure modules take I/O as arguments: no Node built-ins but node:crypto' },
            { regex: '(^|/)lib/(kafka|clickhouse|log|http)\\.ts$', message: 'pure modules do not load the Kafka, ClickHouse, logging or HTTP layers' },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', Buffer: 'readonly' } },
  },
);

// The query role: forensics over ClickHouse (services/query/) and, where the
// audit log is configured, its proofs and verification (services/audit-log/).
import type { AuditLogConfig } from '../audit-log/config.ts';
import { createExportProofs } from '../audit-log/export.ts';
import { knownVerifierKeys } from '../audit-log/keys.ts';
import { createProver } from '../audit-log/proofs.ts';
import type { Signer } from '../audit-log/note.ts';
import { createRecordReader } from '../audit-log/record-reader.ts';
import { auditLogRoutes } from '../audit-log/routes.ts';
import { createAuditLogStore } from '../audit-log/store.ts';
import { createVerifier } from '../audit-log/verify.ts';
import { auditRoutes } from '../query/routes.ts';
import { routesOnly, type RoleContext, type RoleModule } from './role.ts';

export const queryRole = (ctx: RoleContext, o: { auditLog: AuditLogConfig | undefined; signer: Signer | undefined }): RoleModule =>
  routesOnly(async (app) => {
    const { config } = ctx;
    const database = config.clickhouse.database;
    const alc = o.auditLog;
    if (alc === undefined) {
      await app.register(auditRoutes({ clickhouse: ctx.openClickHouse(), database }));
      return;
    }
    const client = ctx.openClickHouse();
    const store = createAuditLogStore(client, database);
    const { keys, verifiers } = knownVerifierKeys({ signingKey: alc.signingKey, keyName: alc.keyName, dataDir: config.dataDir, extra: alc.verifierKeys, ...(o.signer !== undefined ? { signer: o.signer } : {}) });
    // The NDJSON export's `?proofs=1`: each line's inclusion proof against the checkpoints current when it began.
    await app.register(auditRoutes({ clickhouse: ctx.openClickHouse(), database, exportProofs: createExportProofs({ store, prover: createProver(store), verifierKeys: keys }) }));
    const verifier = createVerifier({ client, database, store, verifiers, originPrefix: alc.originPrefix });
    await app.register(auditLogRoutes({ store, reader: createRecordReader(client, database), verify: verifier.verify, verifierKeys: keys }));
  });

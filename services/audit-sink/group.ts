// The audit sink's consumer group, named in one place: `trustfold serve
// --role audit-sink` and the stand-alone `audit-sink/main.ts` must be one
// group, or both would store every record.
export const auditSinkGroupOf = (clientId: string): string => `${clientId}-audit-sink`;

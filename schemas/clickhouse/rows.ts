// Event ↔ ClickHouse row, both ways, in three files along their seams: the
// rows the sink writes (./rows-write.ts), the write-once identities and their
// index/evidence rows (./rows-identity.ts), and reading rows back into events
// (./rows-read.ts). This module re-exports them so `rows.ts` stays the one
// import path for code outside the audit store.
export * from './rows-write.ts';
export * from './rows-identity.ts';
export * from './rows-read.ts';

#!/usr/bin/env node
// trustfold's command line. The code is TypeScript, run through tsx's loader.
import { register } from 'tsx/esm/api';

register();
const argv = process.argv.slice(2);
// gate and the audit log's verify/export run in services/cli; everything else in services/main.ts.
if (argv[0] === 'gate' || (argv[0] === 'audit' && (argv[1] === 'verify' || argv[1] === 'export'))) {
  const { runCli } = await import('../services/cli/cli.ts');
  process.exitCode = await runCli(argv);
} else {
  const { main } = await import('../services/main.ts');
  process.exitCode = await main(argv);
}
// Every role has been stopped when main returns. A library that leaves a
// handle open (a client's idle timer, a socket in TIME_WAIT) must not keep the
// process alive after that: give stdout a moment to drain, then exit.
setTimeout(() => process.exit(), 2000).unref();

#!/usr/bin/env node
// trustfold's command line. The code is TypeScript, run through tsx's loader.
import { register } from 'tsx/esm/api';

register();
const argv = process.argv.slice(2);
if (argv[0] === 'gate') {
  const { runCli } = await import('../services/cli/cli.ts');
  process.exitCode = await runCli(argv);
} else {
  const { main } = await import('../services/main.ts');
  process.exitCode = await main(argv);
}

#!/usr/bin/env node
// trustfold's command line. The code is TypeScript, run through tsx's loader.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../services/main.ts');
process.exitCode = await main(process.argv.slice(2));

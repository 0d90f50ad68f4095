// A worker thread running a module that sits beside the caller: its compiled
// `.js` in a build, its `.ts` source when trustfold runs from source through
// tsx — then the thread registers tsx's loader before it imports the module.
import { Worker } from 'node:worker_threads';

/** `callerUrl`: the caller's `import.meta.url`; `name`: the module's file name without extension. */
export const startModuleWorker = (callerUrl: string, name: string): Worker => {
  const fromSource = callerUrl.endsWith('.ts');
  const url = new URL(`./${name}${fromSource ? '.ts' : '.js'}`, callerUrl).href;
  if (!fromSource) return new Worker(new URL(url));
  const api = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url)}); })`, { eval: true });
};

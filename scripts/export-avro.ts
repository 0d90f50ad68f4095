// Writes schemas/avro/*.avsc from schemas/avro.ts, for consumers in other
// languages. test/unit/avro-files.test.ts fails when the files are stale.
import { mkdirSync, writeFileSync } from 'node:fs';
import { avscFiles } from '../schemas/avro-files.ts';

mkdirSync('schemas/avro', { recursive: true });
for (const [file, text] of Object.entries(avscFiles())) {
  writeFileSync(`schemas/avro/${file}`, text);
  process.stdout.write(`wrote schemas/avro/${file}\n`);
}

import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { baselineDocument } from '../openapi/baseline.ts';
import { acknowledges, breakingChanges } from '../openapi/breaking.ts';
import {
  CLIENT_TYPES_PATH,
  DOCUMENT_PATH,
  renderClientTypes,
  renderDocument,
  serverDocument,
} from '../openapi/generate.ts';
import { errorMessage } from '../../src/platform/cli/target.ts';

// npm run api:check [-- --base REF] — fails (exit 1) when docs/openapi.json or client/schema.ts
// is not what `npm run api:client` writes from the routes, or when the document breaks clients
// of the baseline document (see tools/openapi/baseline.ts) without a new major version.

const root = process.cwd();

try {
  const { values } = parseArgs({ options: { base: { type: 'string' } } });
  const document = await serverDocument();
  const stale: string[] = [];
  for (const [path, expected] of [
    [DOCUMENT_PATH, renderDocument(document)],
    [CLIENT_TYPES_PATH, await renderClientTypes(document)],
  ] as const) {
    const actual = await readFile(`${root}/${path}`, 'utf8').catch(() => undefined);
    if (actual !== expected) stale.push(path);
  }
  let failed = false;
  if (stale.length > 0) {
    failed = true;
    process.stdout.write(`✗ stale: ${stale.join(', ')}. Run \`npm run api:client\` and commit the result.\n`);
  } else process.stdout.write(`✓ ${DOCUMENT_PATH} and ${CLIENT_TYPES_PATH} are what the routes generate\n`);

  const baseline = await baselineDocument(root, values.base);
  if (baseline === undefined) process.stdout.write(`- no baseline document to compare with (first version?)\n`);
  else {
    const problems = breakingChanges(baseline.document, document);
    if (problems.length === 0) process.stdout.write(`✓ no breaking change against ${baseline.ref}\n`);
    else {
      const acknowledged = acknowledges(baseline.document, document);
      failed ||= !acknowledged;
      process.stdout.write(
        acknowledged
          ? `✓ breaking changes against ${baseline.ref}, acknowledged by version ${document.info.version} (was ${baseline.document.info.version}):\n`
          : `✗ breaking changes against ${baseline.ref} (version ${baseline.document.info.version}); ` +
              'give API_VERSION in src/platform/http/docs.ts a new major version to acknowledge them, or undo them:\n',
      );
      for (const problem of problems) process.stdout.write(`    ${problem}\n`);
    }
  }
  process.stdout.write(failed ? 'api:check failed\n' : 'api:check passed\n');
  process.exitCode = failed ? 1 : 0;
} catch (error) {
  process.stderr.write(`api:check failed: ${errorMessage(error)}\n`);
  process.exitCode = 1;
}

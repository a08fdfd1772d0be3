import { withScratchDatabase } from '../db-admin/scratch.ts';
import { runCodegen } from './codegen.ts';
import { adminUrlOf, withTarget } from '../../src/platform/cli/target.ts';
import { commandContext, reportFailure } from '../../src/platform/cli/report.ts';

// npm run db:types — regenerate db-types/ from the schema the migrations build.
try {
  await withTarget((target) => withScratchDatabase(adminUrlOf(target), (url) => runCodegen(url, 'write')));
  process.stdout.write('db-types/index.ts regenerated from migrations/\n');
} catch (error) {
  reportFailure('db:types', error, commandContext());
  process.exitCode = 1;
}

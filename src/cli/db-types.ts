import { runCodegen } from './codegen.ts';

// npm run db:types — regenerate db-types/ from the schema the migrations build.
try {
  await runCodegen('write');
  process.stdout.write('db-types/index.ts regenerated from migrations/\n');
} catch (error) {
  process.stderr.write(`db:types failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}

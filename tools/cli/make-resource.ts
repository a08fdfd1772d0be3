import { makeResource, ResourceNameError } from '../make-resource/generate.ts';
import { errorMessage } from '../../src/platform/cli/target.ts';

// npm run make:resource -- NAME — a resource owned by the signed-in user: a migration, a feature
// folder src/NAME/ (routes, service, repository, query-plan cases), its HTTP tests, and one line
// in src/app.ts. Then: npm run migrate && npm run db:types && npm run api:client.

const USAGE = 'npm run make:resource -- NAME, NAME a plural in kebab-case or snake_case, e.g. projects';

const args = process.argv.slice(2);
const [name] = args;
if (name === undefined || args.length !== 1 || name.startsWith('-')) {
  process.stderr.write(`make:resource: expected one name. Run: ${USAGE}\n`);
  process.exitCode = 1;
} else {
  try {
    const files = await makeResource(process.cwd(), name, new Date());
    process.stdout.write(`make:resource wrote:\n${files.map((file) => `  ${file}\n`).join('')}`);
    const tests = files.filter((file) => file.startsWith('test/')).join(' ');
    process.stdout.write(
      `Next: npm run migrate && npm run db:types && npm run api:client, then npm test -- ${tests}\n`,
    );
  } catch (error) {
    process.stderr.write(
      error instanceof ResourceNameError
        ? `make:resource: ${error.message}\n`
        : `make:resource failed: ${errorMessage(error)}\n`,
    );
    process.exitCode = 1;
  }
}

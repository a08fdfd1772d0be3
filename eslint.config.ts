import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

/** Only the data layer may reach the database driver, the pool or Kysely's runtime. */
const DATA_LAYER_ONLY = {
  paths: [
    {
      name: 'pg',
      message: 'Only repositories (*.repository.ts) and src/platform/db/ may use the pg driver or the pool.',
    },
    { name: 'pg-pool', message: 'Only repositories (*.repository.ts) and src/platform/db/ may use the pool.' },
    {
      name: 'kysely',
      allowTypeImports: true,
      message:
        "Only repositories (*.repository.ts) and src/platform/db/ may use Kysely's runtime; import types with `import type`.",
    },
  ],
  patterns: [
    {
      group: ['kysely/*'],
      allowTypeImports: true,
      message: "Only repositories (*.repository.ts) and src/platform/db/ may use Kysely's runtime.",
    },
  ],
};

export default defineConfig(
  { ignores: ['node_modules/', 'coverage/', '.data/', 'db-types/', 'bench/results/', 'bench/.tmp/'] },
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  // Layout is Prettier's job (npm run format); ESLint keeps to correctness.
  prettier,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-non-null-assertion': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-empty-function': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // Fastify plugins, hooks and handlers are async by contract, awaiting or not.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    // A repository's query-plan declarations (<table>.plans.ts) seed its table with SQL.
    ignores: ['src/platform/db/**', 'src/**/*.repository.ts', 'src/**/*.plans.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', DATA_LAYER_ONLY] },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-empty-pattern': 'off',
      'no-empty-pattern': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
);

// ESLint flat config: typescript-eslint's type-checked rules over every .ts file.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    ignores: ['dist/', 'out/', '.out.tmp-*/', '.cache/', 'qemu-test/artifacts/', 'node_modules/', 'tmp/'],
  },
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // Sources type-check with tsconfig.json; tests, helpers, vitest.config.ts
        // (everything else) with tsconfig.test.json. First match wins.
        project: ['./tsconfig.json', './tsconfig.test.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // noUncheckedIndexedAccess makes `!` after a checked lookup the normal idiom.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // process.env['X'] and record['key'] are written with brackets on purpose.
      '@typescript-eslint/dot-notation': ['error', { allowIndexSignaturePropertyAccess: true }],
      // `() => rmSync(...)` callbacks and `return done()` in void functions are fine.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true, ignoreVoidReturningFunctions: true }],
      // No-op callbacks (`.catch(() => {})`), silent loggers and test stubs are deliberate.
      '@typescript-eslint/no-empty-function': ['error', { allow: ['arrowFunctions', 'methods', 'asyncMethods', 'asyncFunctions'] }],
      // Mostly fires on stubs implementing Promise-returning interfaces; the types already say what returns a promise.
      '@typescript-eslint/require-await': 'off',
      // For environment variables and option strings '' means unset: `||` is meant.
      '@typescript-eslint/prefer-nullish-coalescing': ['error', { ignorePrimitives: { string: true } }],
      // Vitest hooks take (context, suite): `afterAll(async ({}, suite) => ...)`.
      'no-empty-pattern': ['error', { allowObjectPatternsAsParameters: true }],
    },
  },
  // Plain JavaScript (bin/ launchers, this file): in no tsconfig, so no type information.
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);

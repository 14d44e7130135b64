#!/usr/bin/env node
// Thin launcher: the TypeScript sources are compiled to dist/ by 'npm ci' (prepare) or 'npm run build'.
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2), 'update_engine_client').then((code) => {
  process.exitCode = code;
});

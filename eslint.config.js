import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // *.as.ts is AssemblyScript (its own types and builtins), checked by its compiler (npm run build:wasm).
  { ignores: ['node_modules/', '.serverless/', '.esbuild/', 'layers/onnxruntime/dist/', 'scratch/', 'bench/results/', '**/*.as.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
);

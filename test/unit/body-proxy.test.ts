import { describe, expect, it } from 'vitest';
import { forwardAsBytes } from '../../infra/local/body-proxy.ts';

describe('the local body proxy', () => {
  it.each([
    ['no Content-Type (tritonclient)', {}, true],
    ['application/octet-stream', { 'content-type': 'application/octet-stream' }, true],
    ['a form type (urllib)', { 'content-type': 'application/x-www-form-urlencoded' }, true],
    ['JSON with the binary header', { 'content-type': 'application/json', 'inference-header-content-length': '80' }, true],
    ['gzip JSON', { 'content-type': 'application/json', 'content-encoding': 'gzip' }, true],
    ['plain JSON', { 'content-type': 'application/json; charset=utf-8' }, false],
    ['identity-encoded text', { 'content-type': 'text/plain', 'content-encoding': 'identity' }, false],
  ])('forwards a body with %s as bytes: %s', (_case, headers, bytes) => {
    expect(forwardAsBytes(headers)).toBe(bytes);
  });
});

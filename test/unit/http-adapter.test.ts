import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { acceptedEncoding, jsonBody, lambdaPayloadBytes, LAMBDA_RESPONSE_LIMIT_BYTES, type HttpResult } from '../../functions/adapters/http.ts';
import { BadRequestError, PayloadTooLargeError } from '../../functions/core/platform/errors.ts';

const event = (body: string | undefined, isBase64Encoded = false) => ({ body, isBase64Encoded }) as APIGatewayProxyEventV2;

describe('jsonBody, the one reader of JSON request bodies', () => {
  it('parses plain and base64-encoded bodies alike', () => {
    expect(jsonBody(event('{"a":[1,"ü"]}'), { maxBytes: 100 })).toEqual({ a: [1, 'ü'] });
    expect(jsonBody(event(Buffer.from('{"a":[1,"ü"]}').toString('base64'), true), { maxBytes: 100 })).toEqual({ a: [1, 'ü'] });
  });

  it('refuses a body over the limit with 413, counting decoded bytes, with the hint', () => {
    const body = JSON.stringify({ text: 'é'.repeat(10) }); // 31 bytes in UTF-8, 21 characters
    const call = () => jsonBody(event(Buffer.from(body).toString('base64'), true), { maxBytes: 30, tooLargeHint: 'upload it instead' });
    expect(call).toThrow(PayloadTooLargeError);
    expect(call).toThrow('request body of 31 bytes exceeds the limit of 30 bytes; upload it instead');
    expect(jsonBody(event(body), { maxBytes: 31 })).toEqual({ text: 'é'.repeat(10) });
  });

  it('gives an empty body its meaning, else a 400 that says what to send', () => {
    expect(jsonBody(event(undefined), { maxBytes: 10, empty: {} })).toEqual({});
    expect(jsonBody(event('  \n'), { maxBytes: 10, empty: null })).toBe(null);
    expect(() => jsonBody(event(''), { maxBytes: 10, emptyHint: 'send {"dataset": "<name>"}' })).toThrow(new BadRequestError('request body is empty; send {"dataset": "<name>"}'));
    expect(() => jsonBody(event(undefined), { maxBytes: 10 })).toThrow(new BadRequestError('request body is empty'));
  });

  it('refuses what is not JSON with 400', () => {
    expect(() => jsonBody(event('{"a":'), { maxBytes: 10 })).toThrow(BadRequestError);
    expect(() => jsonBody(event('{"a":'), { maxBytes: 10 })).toThrow(/^request body is not valid JSON: /);
  });
});

describe('lambdaPayloadBytes, what Lambda counts against its response limit', () => {
  it('is the byte length of the result as JSON, escapes included, for text and base64 bodies', () => {
    const results: HttpResult[] = [
      { statusCode: 200, headers: { 'content-type': 'application/json' }, body: '{"a":"é\\n"}' },
      { statusCode: 200, headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(300, 7).toString('base64'), isBase64Encoded: true },
      // Every quote of the body is escaped: twice its length.
      { statusCode: 200, headers: {}, body: '"'.repeat(LAMBDA_RESPONSE_LIMIT_BYTES / 4) },
    ];
    for (const result of results) expect(lambdaPayloadBytes(result)).toBe(Buffer.byteLength(JSON.stringify(result)));
  });
});

describe('acceptedEncoding', () => {
  const withHeader = (value: string) => ({ headers: { 'Accept-Encoding': value } }) as unknown as APIGatewayProxyEventV2;
  it.each([
    ['gzip, deflate', 'gzip'],
    ['deflate', 'deflate'],
    ['gzip;q=0, deflate', 'deflate'],
    ['br', undefined],
    ['identity', undefined],
    ['*', 'gzip'],
  ])('answers %j in %s', (value, coding) => {
    expect(acceptedEncoding(withHeader(value))).toBe(coding);
  });
});

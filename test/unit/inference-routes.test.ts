import { describe, expect, it } from 'vitest';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OTHER_FUNCTION_ROUTES } from '../../functions/inference/app.ts';

/**
 * Every `METHOD /path` an HTTP API event declares, by function, in serverless.yml and
 * infra/serverless/*.yml: each function starts at its own key (`  name:` or `  - name:`), and its
 * httpApi events list `method:` then `path:`.
 */
async function declaredRoutes(): Promise<Map<string, string[]>> {
  const files = ['serverless.yml', ...(await readdir('infra/serverless')).filter((f) => f.endsWith('.yml')).map((f) => join('infra/serverless', f))];
  const routes = new Map<string, string[]>();
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    const functions = text.slice(text.search(/^functions:/m));
    let current = '';
    for (const match of functions.matchAll(/^ {2}(?:- )?([A-Za-z][\w-]*):\s*$|- httpApi:\s*\n\s*method: '?([^'\s]+)'?\s*\n\s*path: (\S+)/gm)) {
      if (match[1]) current = match[1];
      else routes.set(current, [...(routes.get(current) ?? []), `${match[2]!.toUpperCase()} ${match[3]}`]);
    }
  }
  return routes;
}

describe('inference routes', () => {
  it("knows every other function's route under /v2, so their wrong methods are 405 and not 404", async () => {
    const routes = await declaredRoutes();
    const others = [...routes].filter(([name]) => name !== 'inference').flatMap(([, keys]) => keys).filter((k) => k.split(' ')[1]!.startsWith('/v2'));
    expect([...OTHER_FUNCTION_ROUTES].sort()).toEqual(others.sort());
  });

  it('declares catch-alls for every other method and path under /v2, one route per method and path', async () => {
    const inference = (await declaredRoutes()).get('inference')!;
    expect(inference).toContain('* /v2');
    expect(inference).toContain('* /v2/{proxy+}');
    expect(new Set(inference).size).toBe(inference.length);
  });
});

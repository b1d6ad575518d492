import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../functions/core/platform/errors.ts';
import type { RowError } from '../../functions/core/batch/rows.ts';
import { batchIncompatibility, concatRows, decodeCsvRow, decodeJsonlRow, inputSpecs } from '../../functions/core/batch/rows.ts';
import { addResultLine, resultLine, resultOutput, scoreRows } from '../../functions/core/batch/scoring.ts';
import { ShardLines } from '../../functions/core/batch/input.ts';
import { jsonlBody, JsonlWriter } from '../../functions/core/batch/output.ts';
import { renumber } from '../../functions/core/batch/merge.ts';
import { jobView } from '../../functions/core/batch/schemas.ts';
import type { LoadedModel } from '../../functions/core/sessions/model-sessions.ts';
import type { JobRecord } from '../../functions/core/jobs/record.ts';
import { doublingModel } from '../helpers/batch-stack.ts';

const specs = inputSpecs([{ name: 'x', datatype: 'FP32', shape: [-1, 4] }]);

describe('decodeJsonlRow', () => {
  it('reads a V2 tensor with or without the leading batch dimension, datatype and shape', () => {
    const full = decodeJsonlRow('{"id":"a","inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}', specs);
    const bare = decodeJsonlRow('{"inputs":[{"name":"x","data":[[1,2],[3,4]]}]}', specs);
    expect(full).toEqual({ id: 'a', tensors: [{ data: new Float32Array([1, 2, 3, 4]), shape: [4] }] });
    expect(bare).toEqual({ tensors: [{ data: new Float32Array([1, 2, 3, 4]), shape: [4] }] });
  });

  it('says precisely what is wrong with a bad row, keeping its id', () => {
    const error = (line: string) => {
      try {
        decodeJsonlRow(line, specs);
      } catch (e) {
        return [(e as Error).message, (e as RowError).id];
      }
      return undefined;
    };
    expect(error('[1,2]')).toEqual(['a row must be a JSON object with "inputs"', undefined]);
    expect(error('{"id":7,"inputs":[{"name":"y","data":[1]}]}')).toEqual(["unknown input 'y'; the model has inputs: x", 7]);
    expect(error('{"id":"s","inputs":[{"name":"x","shape":[2,2],"data":[1,2,3,4]}]}')).toEqual([
      "input 'x' has shape [2,2] but a row of this model is [4] (optionally with a leading 1)",
      's',
    ]);
    expect(error('{"inputs":[{"name":"x","data":[1,2,3,4]},{"name":"x","data":[1,2,3,4]}]}')).toEqual(["input 'x' appears more than once", undefined]);
    expect(error('{"id":{"a":1},"inputs":[]}')).toEqual(['"id" must be a string or a number', undefined]);
  });

  it('reads what the online endpoint reads: the NaN and Infinity tokens, exact 64-bit integers; a literal past the range is refused, not Infinity', () => {
    const int64 = inputSpecs([{ name: 'n', datatype: 'INT64', shape: [-1, 2] }]);
    const fp64 = inputSpecs([{ name: 'd', datatype: 'FP64', shape: [-1, 2] }]);
    expect(decodeJsonlRow('{"id":"t","inputs":[{"name":"x","data":[NaN,-Infinity,Infinity,0.5]}]}', specs)).toEqual({
      id: 't',
      tensors: [{ data: new Float32Array([Number.NaN, -Infinity, Infinity, 0.5]), shape: [4] }],
    });
    expect(decodeJsonlRow('{"inputs":[{"name":"n","data":[9007199254740993,-9223372036854775808]}]}', int64)).toEqual({
      tensors: [{ data: new BigInt64Array([9007199254740993n, -9223372036854775808n]), shape: [2] }],
    });
    expect(() => decodeJsonlRow('{"inputs":[{"name":"x","data":[1e400,1,2,3]}]}', specs)).toThrow("input 'x': element 0 is 1e400, beyond the range of FP32");
    expect(() => decodeJsonlRow('{"inputs":[{"name":"d","data":[-1e400,1]}]}', fp64)).toThrow("input 'd': element 0 is -1e400, beyond the range of FP64");
    expect(() => decodeJsonlRow('{"inputs":[{"name":"x","data":[NaN,1,2,3]}', specs)).toThrow(/^not valid JSON: /);
  });
});

describe('decodeCsvRow', () => {
  it('reads numbers into the input type, and refuses what is not one', () => {
    const ints = inputSpecs([{ name: 'n', datatype: 'INT64', shape: [-1, 2] }])[0]!;
    expect(decodeCsvRow(' 3, -4 ', ints)).toEqual({ tensors: [{ data: new BigInt64Array([3n, -4n]), shape: [2] }] });
    expect(() => decodeCsvRow('3,4.5', ints)).toThrow("input 'n': element 1 is 4.5, expected an integer for INT64");
    expect(() => decodeCsvRow('3,', ints)).toThrow('column 2 is empty');
  });

  it('reads integers beyond 2^53 exactly and refuses a number past the datatype, never Infinity', () => {
    const ints = inputSpecs([{ name: 'n', datatype: 'INT64', shape: [-1, 2] }])[0]!;
    const floats = inputSpecs([{ name: 'f', datatype: 'FP32', shape: [-1, 3] }])[0]!;
    expect(decodeCsvRow('9007199254740993,-9223372036854775808', ints)).toEqual({ tensors: [{ data: new BigInt64Array([9007199254740993n, -9223372036854775808n]), shape: [2] }] });
    expect(decodeCsvRow('NaN,-Infinity,1e20', floats)).toEqual({ tensors: [{ data: new Float32Array([Number.NaN, -Infinity, 1e20]), shape: [3] }] });
    expect(() => decodeCsvRow('1,1e400,2', floats)).toThrow("input 'f': element 1 is 1e400, beyond the range of FP32");
  });
});

describe('batchIncompatibility', () => {
  it('names the reason a model cannot be batch-scored', () => {
    expect(batchIncompatibility([{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], 'jsonl')).toBeUndefined();
    expect(batchIncompatibility([{ name: 'x', datatype: 'FP32', shape: [8, 4] }], 'jsonl')).toBe(
      "input 'x' has a fixed batch dimension of 8; batch scoring needs -1 (dynamic) or 1",
    );
    expect(batchIncompatibility([{ name: 'a', datatype: 'FP32', shape: [-1, 1] }, { name: 'b', datatype: 'FP32', shape: [-1, 1] }], 'csv')).toBe(
      'CSV rows fit single-input models only; this model has 2 inputs: a, b',
    );
  });
});

describe('concatRows', () => {
  it('joins rows end to end in the same element type', () => {
    expect(concatRows([new Int32Array([1, 2]), new Int32Array([3])])).toEqual(new Int32Array([1, 2, 3]));
    expect(concatRows([['a'], ['b', 'c']])).toEqual(['a', 'b', 'c']);
  });
});

/** A real session of y = 2x, as the batch workers load it. */
/** The lines scored as strings (the JSON.parse reader) and as one shard's bytes (the byte reader). */
async function scoreBothWays(model: LoadedModel, lines: string[], batchSize: number) {
  const bytes = Buffer.from(`${lines.join('\n')}\n`);
  const starts = lines.map((_, i) => lines.slice(0, i).reduce((n, l) => n + l.length + 1, 0));
  const shard = new ShardLines(bytes, starts, starts.map((s, i) => s + lines[i]!.length));
  return { fromStrings: await scoreRows(model, lines, { format: 'jsonl', batchSize }), fromBytes: await scoreRows(model, shard, { format: 'jsonl', batchSize }) };
}

async function doublingSession(): Promise<LoadedModel> {
  const session = await ort.InferenceSession.create(doublingModel(), { intraOpNumThreads: 1 });
  return {
    name: 'double',
    version: '1',
    session,
    inputs: new Map([['x', { name: 'x', datatype: 'FP32', shape: [-1, 4] }]]),
    outputs: new Map([['y', { name: 'y', datatype: 'FP32', shape: [-1, 4] }]]),
  } as unknown as LoadedModel;
}

/** A JSONL body's lines (each ends with a newline). */
const linesOf = (body: Buffer) => body.toString('utf8').split('\n').slice(0, -1);

describe('scoreRows', () => {
  it('scores rows in batches and writes one line per row, in order, with errors in place', async () => {
    // Prepare: a real session of y = 2x.
    const model = await doublingSession();
    const lines = [0, 1, 2, 3, 4].map((i) => (i === 2 ? '{"id":"bad","inputs":[{"name":"x","data":[1]}]}' : JSON.stringify({ id: i, inputs: [{ name: 'x', data: [i, i, i, i] }] })));

    // Act: with batches of 4 the bad row is answered while rows 0 and 1 still wait for their batch.
    for (const batchSize of [1, 2, 4]) {
      const scored = await scoreRows(model, lines, { format: 'jsonl', batchSize });

      // Assert
      expect({ ...scored, body: linesOf(scored.body) }, `batches of ${batchSize}`).toEqual({
        rows: 5,
        failed: 1,
        errorLines: ['{"row":2,"id":"bad","error":"input \'x\' has 1 elements but its shape needs 4"}'],
        body: [
          '{"row":0,"id":0,"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[0,0,0,0]}]}',
          '{"row":1,"id":1,"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[2,2,2,2]}]}',
          '{"row":2,"id":"bad","error":"input \'x\' has 1 elements but its shape needs 4"}',
          '{"row":3,"id":3,"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[6,6,6,6]}]}',
          '{"row":4,"id":4,"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[8,8,8,8]}]}',
        ],
      });
    }
    await expect(scoreRows(model, lines, { format: 'jsonl', batchSize: 2, outputs: ['z'] })).rejects.toThrow(BadRequestError);
  });

  it('writes output values as the online answer does, exact: fewest FP32 digits, -0.0 and Infinity as tokens', async () => {
    const model = await doublingSession();
    // 3e38 doubles past FP32's range; the escaped id takes the full decoder, the others the byte reader.
    const lines = [
      '{"id":"a\\u00e9","inputs":[{"name":"x","data":[0.1,-0,3e38,1.5e-45]}]}',
      '{"id":7,"inputs":[{"name":"x","data":[5,-2.25,16777217,0.333333333333]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}',
    ];
    const expected = [
      '{"row":0,"id":"a\u00e9","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[0.2,-0.0,Infinity,3e-45]}]}',
      '{"row":1,"id":7,"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[10,-4.5,33554432,0.6666667]}]}',
      '{"row":2,"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[2,4,6,8]}]}',
    ];
    const { fromStrings, fromBytes } = await scoreBothWays(model, lines, 2);

    expect(linesOf(fromStrings.body)).toEqual(expected);
    expect(linesOf(fromBytes.body)).toEqual(expected);
  });

  it('echoes a numeric id a double cannot hold as its own digits, on every reader, in result and error lines', async () => {
    const model = await doublingSession();
    // Row 3 nests its data (the full decoder); the others take the byte reader, or from strings the
    // JSON.parse reader; row 4's duplicate id key makes the last one the id, as JSON.parse does.
    const lines = [
      '{"id":9007199254740993,"inputs":[{"name":"x","data":[1,2,3,4]}]}',
      '{"id":1.0000000000000000001,"inputs":[{"name":"x","data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"x","data":[1,2,3,4]}],"id":-12345678901234567890}',
      '{"id":9007199254740993,"inputs":[{"name":"x","data":[[1,2],[3,4]]}]}',
      '{"id":1,"inputs":[{"name":"x","data":[1,2,3,4]}],"id":9007199254740995}',
      '{"id":9007199254740997,"inputs":[{"name":"x","data":[1]}]}',
      '{"id":12.5,"inputs":[{"name":"x","data":[1,2,3,4]}]}',
    ];
    const out = '"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[2,4,6,8]}]}';
    const expected = [
      `{"row":0,"id":9007199254740993,${out}`,
      `{"row":1,"id":1.0000000000000000001,${out}`,
      `{"row":2,"id":-12345678901234567890,${out}`,
      `{"row":3,"id":9007199254740993,${out}`,
      `{"row":4,"id":9007199254740995,${out}`,
      '{"row":5,"id":9007199254740997,"error":"input \'x\' has 1 elements but its shape needs 4"}',
      `{"row":6,"id":12.5,${out}`,
    ];
    const { fromStrings, fromBytes } = await scoreBothWays(model, lines, 3);

    expect(linesOf(fromStrings.body)).toEqual(expected);
    expect(linesOf(fromBytes.body)).toEqual(expected);
    expect(fromBytes.errorLines).toEqual([expected[5]]);
  });
});

describe('addResultLine', () => {
  it("writes resultLine's line and a newline, in place for FP32 outputs and through the string otherwise", () => {
    // Prepare: FP32 outputs of two shapes, and outputs that take the string (INT64, FP16, FP64).
    const fp32 = resultOutput('logits', 'FP32', [3], Float32Array.from([0.1, -0, Number.NaN, 1e-7, 3.4e38, -2.5, 7, 1e21, 0.6666667]));
    const second = resultOutput('p\u00e9"q', 'FP32', [1, 1], Float32Array.from([Infinity, -Infinity, 2 ** -149]));
    const int64 = resultOutput('n', 'INT64', [1], BigInt64Array.from([9007199254740993n, -1n, 0n]));
    const fp16 = resultOutput('h', 'FP16', [1], Uint16Array.from([0x3c00, 0x8000, 0x7e00]));
    const fp64 = resultOutput('d', 'FP64', [1], Float64Array.from([0.1, -0, Number.NaN]));
    // The longest text each value can have (a sign and 21 digits), so the line needs all its room.
    const widest = resultOutput('w', 'FP32', [2], Float32Array.from({ length: 6 }, () => -1.2345679e20));
    const cases: [string | number | undefined, ReturnType<typeof resultOutput>[]][] = [
      [undefined, [fp32]],
      [42, [fp32, second]],
      ['caf\u00e9 "x"\n', [second, fp32]],
      [-1.5, [fp32, int64]],
      ['id', [fp16, fp32, fp64]],
      [undefined, [widest]],
    ];

    // Act
    const writer = new JsonlWriter(8); // grows as lines come
    const expected: string[] = [];
    for (const [id, outputs] of cases) {
      for (let r = 0; r < 3; r++) {
        const index = outputs[0] === widest ? Number.MAX_SAFE_INTEGER - r : 10 + r;
        addResultLine(writer, index, id, outputs, r);
        expected.push(resultLine(index, id, outputs, r));
      }
    }

    // Assert: the same bytes, and lines JSON can read (the online answer's tokens aside).
    expect(writer.toBuffer().toString('utf8')).toBe(`${expected.join('\n')}\n`);
    expect(expected[4]).toBe('{"row":11,"id":42,"outputs":[{"name":"logits","datatype":"FP32","shape":[1,3],"data":[1e-7,3.4e+38,-2.5]},{"name":"p\u00e9\\"q","datatype":"FP32","shape":[1,1,1],"data":[-Infinity]}]}');
    expect(expected[15]).toBe('{"row":9007199254740991,"outputs":[{"name":"w","datatype":"FP32","shape":[1,2],"data":[-123456790000000000000,-123456790000000000000]}]}');
    expect(expected[9]).toBe('{"row":10,"id":-1.5,"outputs":[{"name":"logits","datatype":"FP32","shape":[1,3],"data":[0.1,-0.0,NaN]},{"name":"n","datatype":"INT64","shape":[1,1],"data":[9007199254740993]}]}');
  });

  it('refuses a line that runs past the room it asked for, leaving the body as it was', () => {
    const writer = new JsonlWriter(64);
    writer.add('{"row":0}');
    expect(() => writer.addWith(4, (out, at) => at + 4)).toThrow('a result line ran past the 4 bytes it was given');
    writer.add('{"row":1}');
    expect(writer.toBuffer().toString()).toBe('{"row":0}\n{"row":1}\n');
  });
});

describe('jobView', () => {
  it('reports rows per second over the time since the first shard started', () => {
    const job = {
      id: 'j',
      kind: 'batch',
      state: 'running',
      request: { model: 'm', version: '1', format: 'jsonl', batchSize: 64, worker: 'lambda', inputBucket: 'b', inputKey: 'batches/inputs/a.jsonl', shardsTotal: 4 },
      counters: { shardsDone: 2, rowsScored: 900, rowsFailed: 100 },
      stepsFailed: 0,
      created: '1970-01-01T00:00:00.000Z',
      started: '1970-01-01T00:00:01.000Z',
    } as unknown as JobRecord;
    expect(jobView(job, 3000)).toMatchObject({ shards: { total: 4, done: 2, failed: 0 }, rows: { scored: 900, failed: 100 }, rows_per_s: 500, started: '1970-01-01T00:00:01.000Z' });
  });
});

describe('renumber (the merge)', () => {
  it('moves every row number up by the shard base on the bytes, keeping the rest of each line as it is', () => {
    const shard = Buffer.from('{"row":0,"outputs":[1.5]}\n{"row":9,"id":"ä-1","error":"bad ✓"}\n\n{"row":10,"outputs":[]}');
    expect(renumber(shard, 99_990).toString('utf8')).toBe('{"row":99990,"outputs":[1.5]}\n{"row":99999,"id":"ä-1","error":"bad ✓"}\n{"row":100000,"outputs":[]}\n');
    expect(renumber(shard, 0).toString('utf8')).toBe('{"row":0,"outputs":[1.5]}\n{"row":9,"id":"ä-1","error":"bad ✓"}\n{"row":10,"outputs":[]}\n');
    expect(renumber(new Uint8Array(0), 5).length).toBe(0);
  });
});

describe('jsonlBody', () => {
  it('is the lines joined and newline-terminated, in UTF-8, past its first guess of the size', () => {
    const lines = ['{"row":0}', '{"row":1,"id":"ä-✓-😀"}', '', 'x'.repeat(1000), '✓'.repeat(500)];
    for (const set of [[], lines, lines.slice(1, 2), [...lines].reverse()]) {
      expect(jsonlBody(set).equals(Buffer.from(set.map((l) => `${l}\n`).join(''), 'utf8'))).toBe(true);
    }
  });
});

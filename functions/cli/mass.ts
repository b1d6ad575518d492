import { Command, CommanderError } from 'commander';
import { registerModelCommands } from './commands/models.ts';
import { registerDatasetCommands } from './commands/dataset.ts';
import { registerEvaluateCommands } from './commands/evaluate.ts';
import { registerBatchCommands } from './commands/batch.ts';
import { registerQuantizeCommands } from './commands/quantize.ts';
import { registerRegistryCommands } from './commands/registry.ts';
import { registerJobsCommands } from './commands/jobs.ts';
import { registerFederationCommands } from './commands/federation.ts';
import { registerTrainCommands } from './commands/train.ts';
import { registerTuneCommands } from './commands/tune.ts';
import { registerMonitorCommands } from './commands/monitor.ts';
import { registerPipelineCommands } from './commands/pipeline.ts';
import { CliError, localStackFile } from './context.ts';

const program = new Command('mass')
  .description('AI Mass: serve ONNX models with the Open Inference Protocol V2')
  .option('--api <url>', 'HTTP API base URL (env MASS_API_URL; default: the local stack)')
  .option('--bucket <name>', 'model bucket (env MASS_BUCKET; default: the local stack)')
  .exitOverride()
  .showHelpAfterError();

registerModelCommands(program);
registerDatasetCommands(program);
registerEvaluateCommands(program);
registerBatchCommands(program);
registerQuantizeCommands(program);
registerRegistryCommands(program);
registerJobsCommands(program);
registerTrainCommands(program);
registerFederationCommands(program);
registerTuneCommands(program);
registerMonitorCommands(program);
registerPipelineCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
  let message = error instanceof Error ? error.message : String(error);
  // Refused on loopback while the CLI followed .local/stack.json (read fine by then): the stack is down.
  const local = (error as NodeJS.ErrnoException).code === 'ECONNREFUSED' && !process.env.MASS_BUCKET ? localStackFile() : undefined;
  if (local) message += ` (the local stack in ${local.root} is not running: \`npm start\` there)`;
  console.error(`error: ${message}`);
  process.exit(error instanceof CliError ? error.exitCode : 1);
}

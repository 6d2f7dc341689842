import { toTesseraError } from '../core/errors.js';
import { inspectArchive, packModel } from '../repository/archive.js';
import { TESSERA_VERSION } from '../server/version.js';

/** `tessera pack <model-dir> -o model.tar.gz`: bundle a model directory with a checksummed manifest. */
export async function packCommand(
  modelDir: string,
  flags: { output?: string; name?: string; modelVersion?: string[]; include?: string[] },
): Promise<void> {
  try {
    const versions = flags.modelVersion?.map(Number);
    const result = await packModel(modelDir, flags.output ?? `${modelDir.replace(/\/+$/, '')}.tar.gz`, {
      tesseraVersion: TESSERA_VERSION,
      ...(flags.name === undefined ? {} : { name: flags.name }),
      ...(versions === undefined ? {} : { version: versions }),
      ...(flags.include === undefined ? {} : { include: flags.include }),
    });
    const { manifest } = result;
    process.stdout.write(`packed ${manifest.name} (versions ${manifest.versions.join(', ')}) into ${result.file}: ${manifest.files.length} files, ${manifest.total_size} bytes\n`);
    if (result.skipped.length > 0) process.stdout.write(`not packed (pass --include to add): ${result.skipped.join(', ')}\n`);
  } catch (error) {
    const failure = toTesseraError(error);
    process.stderr.write(`tessera pack: ${failure.code}: ${failure.message}\n`);
    process.exitCode = 1;
  }
}

/** `tessera inspect <archive>`: print the manifest; `--verify` checks every file's checksum. */
export async function inspectCommand(archive: string, flags: { verify?: boolean }): Promise<void> {
  try {
    const manifest = await inspectArchive(archive, { verify: flags.verify === true });
    process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
    if (flags.verify === true) process.stdout.write(`verified: every file matches its sha256\n`);
  } catch (error) {
    const failure = toTesseraError(error);
    process.stderr.write(`tessera inspect: ${failure.code}: ${failure.message}\n`);
    process.exitCode = 1;
  }
}

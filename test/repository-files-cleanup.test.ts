import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { packModel } from '../src/repository/archive.js';
import { LOAD_FILES_PREFIX } from '../src/repository/override-files.js';
import { ARCHIVE_CACHE_DIR } from '../src/repository/repository-archives.js';
import type { TesseraServer } from '../src/server/server.js';
import { makeTempRepository } from './support/fixtures.js';
import { postJson, startTestServer, untilHeld, writeFakeModel } from './support/server.js';

// Files sent with a load are written into directories of their own in $TMPDIR (read at each
// load): a private one here, so only this file's directories are counted.
const privateTmp = mkdtempSync(join(tmpdir(), 'tessera-files-cleanup-'));
process.env['TMPDIR'] = privateTmp;
after(() => rm(privateTmp, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
const overrideRoot = privateTmp;

/** A fake-backend model whose output is its input plus `add`, each execution taking `delayMs`. */
function fakeModel(add: number, delayMs = 0): Parameters<typeof writeFakeModel>[3] {
  return {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x', add }],
    ...(delayMs > 0 ? { delay_ms: delayMs } : {}),
  };
}

/** What `add` the model serving `url` adds (the answer to [1, 2]). */
async function servedAdd(url: string): Promise<number> {
  const result = await postJson(url, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] });
  assert.equal(result.status, 200, JSON.stringify(result.body));
  return (result.body as { outputs: { data: number[] }[] }).outputs[0]!.data[0]! - 1;
}

/**
 * Resolve once the versions serving `model` hold no request: a version loaded beside the one
 * holding a slow request has replaced it, which drains that request.
 */
async function untilReplaced(server: TesseraServer, model: string): Promise<void> {
  const held = (): number => server.engine.describeModels(model)[0]!.versions.reduce((sum, v) => sum + v.inFlight + v.queueDepth, 0);
  const deadline = Date.now() + 10_000;
  while (held() > 0) {
    if (Date.now() > deadline) throw new Error(`no version replaced the one serving '${model}'`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A request held `delayMs` by the model, with whether it is still running. */
function slowRequest(url: string): { readonly done: Promise<number>; pending: () => boolean } {
  let settled = false;
  const done = servedAdd(url).finally(() => {
    settled = true;
  });
  return { done, pending: () => !settled };
}

const NO_WARMUP = { enabled: false };

describe('directories made for loads are removed once nothing serves from them', () => {
  test('load with files: replaced, refused, failed and unloaded loads leave at most the serving directory', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(repo, 'm', 1, fakeModel(0));
    const server = await startTestServer(t, repo, { modelControlMode: 'explicit' });
    const load = `${server.httpUrl}/v2/repository/models/m/load`;
    const infer = `${server.httpUrl}/v2/models/m/infer`;
    const overrides = (model = 'm'): string[] => (existsSync(overrideRoot) ? readdirSync(overrideRoot).filter((entry) => entry.startsWith(`${LOAD_FILES_PREFIX}${model}-`)) : []);
    const files = (definition: Parameters<typeof writeFakeModel>[3]): Record<string, string> => ({ 'file:1/model.json': Buffer.from(JSON.stringify(definition)).toString('base64') });
    const config = JSON.stringify({ backend: 'fake', warmup: NO_WARMUP });

    // A link planted where a shared folder for such files would be: nothing follows it.
    const planted = mkdtempSync(join(privateTmp, 'planted-'));
    symlinkSync(planted, join(privateTmp, 'tessera-model-overrides'));
    for (let i = 1; i <= 8; i++) {
      const loaded = await postJson(load, { parameters: { config, ...files(fakeModel(i)) } });
      assert.equal(loaded.status, 200, JSON.stringify(loaded.body));
      assert.equal(await servedAdd(infer), i, 'the files just sent serve');
      assert.equal(overrides().length, 1, `after load ${i}: only the serving directory is left, found ${overrides().join(', ')}`);
      // A directory of the load's own, private (mkdtemp), not in a folder another user could share.
      assert.equal(statSync(join(overrideRoot, overrides()[0]!)).mode & 0o777, 0o700);

      // Refused for its config: no file is written.
      const refused = await postJson(load, { parameters: { config: JSON.stringify({ backend: 'fake', max_batch_size: 'x' }), ...files(fakeModel(100)) } });
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      // Files that do not load: their directory goes, the version serving keeps its own.
      const failed = await postJson(load, { parameters: { config, 'file:1/model.json': Buffer.from('not json').toString('base64') } });
      assert.notEqual(failed.status, 200);
      assert.match((failed.body as { error: string }).error, /is not valid JSON/);
      assert.equal(await servedAdd(infer), i, 'a failed load leaves the version serving');
      assert.equal(overrides().length, 1, `after refused loads ${i}: ${overrides().join(', ')}`);
    }
    assert.deepEqual(readdirSync(planted), [], 'no file went through the planted link');
    // The serving directory is the model's directory again after the failed loads: a load with a config only reloads it.
    assert.equal((await postJson(load, { parameters: { config: JSON.stringify({ backend: 'fake', warmup: NO_WARMUP, max_batch_size: 2 }) } })).status, 200);
    assert.equal(await servedAdd(infer), 8);
    assert.equal(overrides().length, 1);

    // Files with a config the load refuses are not written: the model is not added either.
    const ghost = await postJson(`${server.httpUrl}/v2/repository/models/ghost/load`, { parameters: { config: JSON.stringify({ max_batch_size: -1 }), ...files(fakeModel(0)) } });
    assert.equal(ghost.status, 400, JSON.stringify(ghost.body));
    assert.match((ghost.body as { error: string }).error, /invalid config for model 'ghost'.*max_batch_size/);
    assert.deepEqual(overrides('ghost'), []);
    assert.deepEqual(server.engine.repositoryIndex().filter((entry) => entry.name === 'ghost'), []);

    // A model that exists only as files: a failed first load leaves nothing behind.
    const sentFailed = await postJson(`${server.httpUrl}/v2/repository/models/sent/load`, { parameters: { config, 'file:1/model.json': Buffer.from('{').toString('base64') } });
    assert.notEqual(sentFailed.status, 200);
    assert.deepEqual(overrides('sent'), []);
    assert.equal((await postJson(`${server.httpUrl}/v2/repository/models/sent/load`, { parameters: { config, ...files(fakeModel(7)) } })).status, 200);
    assert.equal(await servedAdd(`${server.httpUrl}/v2/models/sent/infer`), 7);
    assert.equal(overrides('sent').length, 1);

    // A version draining requests keeps its files until it has been retired.
    assert.equal((await postJson(load, { parameters: { config, ...files(fakeModel(20, 2000)) } })).status, 200);
    const [draining] = overrides();
    const slow = slowRequest(infer);
    await untilHeld(server, 'm', 1);
    const replacing = postJson(load, { parameters: { config, ...files(fakeModel(21)) } });
    await untilReplaced(server, 'm');
    assert.ok(slow.pending(), 'the slow request is still running');
    assert.equal(await servedAdd(infer), 21, 'the new files serve');
    assert.ok(existsSync(join(overrideRoot, draining!)), 'the draining version keeps its files');
    assert.equal(overrides().length, 2);
    assert.equal(await slow.done, 20, 'the draining version answers');
    assert.equal((await replacing).status, 200);
    assert.equal(overrides().length, 1);
    assert.ok(!existsSync(join(overrideRoot, draining!)), 'retired, its files are removed');

    // Unload, then a load from the repository: the model's own files serve, the sent ones are gone.
    assert.equal((await postJson(`${server.httpUrl}/v2/repository/models/m/unload`, {})).status, 200);
    assert.deepEqual(overrides(), []);
    assert.equal((await postJson(load, {})).status, 200);
    assert.equal(await servedAdd(infer), 0);

    // Closing removes the directories of the models still loaded from files.
    await server.close();
    assert.deepEqual(overrides('sent'), []);
  });

  test('archives in the repository: one unpacked copy per archive, whatever the rewrites; stale copies go at start', async (t) => {
    const repo = await makeTempRepository();
    const work = await makeTempRepository('tessera-archive-src-');
    t.after(() => Promise.all([repo, work].map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }))));
    const archive = join(repo, 'arch.tar.gz');
    const pack = async (add: number, delayMs = 0): Promise<void> => {
      await rm(join(work, 'arch'), { recursive: true, force: true });
      await writeFakeModel(work, 'arch', 1, fakeModel(add, delayMs), 'warmup:\n  enabled: false\n');
      await rm(archive, { force: true });
      await packModel(join(work, 'arch'), archive, { tesseraVersion: 'test' });
    };
    const cache = join(repo, ARCHIVE_CACHE_DIR);
    const copies = (): string[] => (existsSync(cache) ? readdirSync(cache) : []);

    await pack(0, 2000);
    const server = await startTestServer(t, repo, { modelControlMode: 'poll', repositoryPollSecs: 3600 });
    const infer = `${server.httpUrl}/v2/models/arch/infer`;
    assert.equal(copies().length, 1);

    // The copy a version drains from stays until the version is retired.
    const [first] = copies();
    const slow = slowRequest(infer);
    await untilHeld(server, 'arch', 1);
    await pack(1);
    const syncing = server.engine.syncRepository();
    await untilReplaced(server, 'arch');
    assert.ok(slow.pending(), 'the slow request is still running');
    assert.equal(await servedAdd(infer), 1, 'the rewritten archive serves');
    assert.ok(copies().includes(first!), 'the draining version keeps its files');
    assert.equal(await slow.done, 0, 'the draining version answers');
    await syncing;
    assert.equal(copies().length, 1);
    assert.ok(!copies().includes(first!), 'retired, its copy is removed');

    for (let i = 2; i <= 8; i++) {
      await pack(i);
      await server.engine.syncRepository();
      assert.equal(await servedAdd(infer), i, 'the rewritten archive serves');
      assert.equal(copies().length, 1, `after rewrite ${i}: ${copies().join(', ')}`);
    }
    await server.close();

    // A copy left by an earlier run, and the archive rewritten while the server was down.
    await mkdir(join(cache, 'arch@0123456789abcdef', '1'), { recursive: true });
    await pack(9);
    assert.equal(copies().length, 2);
    const restarted = await startTestServer(t, repo, { modelControlMode: 'poll', repositoryPollSecs: 3600 });
    assert.equal(await servedAdd(`${restarted.httpUrl}/v2/models/arch/infer`), 9);
    assert.equal(copies().length, 1, `after a restart: ${copies().join(', ')}`);

    // A removed archive takes its copy with it.
    await rm(archive);
    await restarted.engine.syncRepository();
    assert.deepEqual(copies(), []);
  });

  test('a model directory added beside an archive of its name takes over from it, and the archive serves again once it goes', async (t) => {
    const repo = await makeTempRepository();
    const work = await makeTempRepository('tessera-archive-src-');
    t.after(() => Promise.all([repo, work].map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }))));
    await writeFakeModel(work, 'arch', 1, fakeModel(1), 'warmup:\n  enabled: false\n');
    await packModel(join(work, 'arch'), join(repo, 'arch.tar.gz'), { tesseraVersion: 'test' });
    const cache = join(repo, ARCHIVE_CACHE_DIR);
    const copies = (): string[] => (existsSync(cache) ? readdirSync(cache) : []);
    const server = await startTestServer(t, repo, { modelControlMode: 'poll', repositoryPollSecs: 3600 });
    const infer = `${server.httpUrl}/v2/models/arch/infer`;
    assert.equal(await servedAdd(infer), 1, 'the archive serves');

    await writeFakeModel(repo, 'arch', 1, fakeModel(2), 'warmup:\n  enabled: false\n');
    await server.engine.syncRepository();
    assert.equal(await servedAdd(infer), 2, 'the directory wins');
    assert.deepEqual(copies(), [], 'the shadowed archive keeps no unpacked copy');
    assert.equal(server.engine.describeModels('arch')[0]!.versions.length, 1);

    await rm(join(repo, 'arch'), { recursive: true });
    await server.engine.syncRepository();
    assert.equal(await servedAdd(infer), 1, 'the archive serves again');
    assert.equal(copies().length, 1);
  });
});

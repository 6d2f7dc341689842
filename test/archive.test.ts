import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { create as tarCreate, Header, Pax } from 'tar';
import { TesseraError } from '../src/core/errors.js';
import { extractArchive, inspectArchive, packModel } from '../src/repository/archive.js';
import type { ModelArchiveManifest } from '../src/repository/manifest.js';

// ---------------------------------------------------------------------------
// A hand-rolled tar reader/writer, so tests can tamper with archives byte by byte.
// ---------------------------------------------------------------------------

interface RawEntry {
  path: string;
  data: Buffer;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'FIFO';
  linkpath?: string;
}

function readTar(gz: Buffer): RawEntry[] {
  const tar = gunzipSync(gz);
  const entries: RawEntry[] = [];
  let offset = 0;
  let paxPath: string | undefined;
  while (offset + 512 <= tar.length) {
    const header = new Header(tar, offset);
    if (header.nullBlock) break;
    const size = header.size ?? 0;
    const data = tar.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (header.type === 'ExtendedHeader') {
      paxPath = Pax.parse(data.toString('utf8')).path;
      continue;
    }
    entries.push({ path: paxPath ?? header.path!, data: Buffer.from(data), type: header.type as RawEntry['type'] });
    paxPath = undefined;
  }
  return entries;
}

function writeTar(entries: readonly RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const type = entry.type ?? 'File';
    const size = type === 'File' ? entry.data.length : 0;
    const data = { path: entry.path, mode: 0o644, uid: 0, gid: 0, size, mtime: new Date(0), type, ...(entry.linkpath === undefined ? {} : { linkpath: entry.linkpath }) };
    const header = new Header(data);
    if (header.encode()) blocks.push(new Pax(data).encode());
    blocks.push(header.block!);
    if (size > 0) {
      blocks.push(entry.data);
      blocks.push(Buffer.alloc((512 - (size % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A manifest listing `files` exactly, as packModel would write it. */
function manifestFor(files: Record<string, Buffer>, versions = [1]): ModelArchiveManifest {
  const listed = Object.keys(files)
    .sort()
    .map((path) => ({ path, size: files[path]!.length, sha256: sha256(files[path]!) }));
  return {
    format: 'tessera-model-archive',
    format_version: 1,
    name: 'crafted',
    versions,
    files: listed,
    total_size: listed.reduce((s, f) => s + f.size, 0),
    created_at: '2025-01-01T00:00:00.000Z',
    tessera_version: '0.0.0-test',
    config_file: null,
    handler_file: null,
  };
}

function manifestEntry(manifest: object): RawEntry {
  return { path: 'MANIFEST.json', data: Buffer.from(JSON.stringify(manifest)) };
}

// ---------------------------------------------------------------------------

let work: string;
let modelDir: string;
let archive: string;
let counter = 0;

const MODEL_FILES: Record<string, Buffer | string> = {
  '1/model.onnx': Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256)),
  '2/model.onnx': Buffer.from('version two model bytes'),
  '2/weights/external.bin': Buffer.alloc(70_000, 3),
  'config.yaml': 'max_batch_size: 8\nlabel_filename: classes.txt\n',
  'classes.txt': 'cat\ndog\n',
  'labels.txt': 'a\nb\n',
  'handler.js': 'export function postprocess(outputs) { return outputs.length; }\n',
  'baseline.json': '{"accuracy": 0.9}\n',
  'notes.md': 'not packed unless included\n',
  'tools/convert.py': 'print(1)\n',
  '.git/HEAD': 'ref: refs/heads/main\n',
  '1/.DS_Store': 'junk',
};

async function freshDir(label: string): Promise<string> {
  return join(work, `${label}-${counter++}`);
}

async function tampered(entries: readonly RawEntry[]): Promise<string> {
  const file = join(work, `tampered-${counter++}.tar.gz`);
  await writeFile(file, writeTar(entries));
  return file;
}

async function refused(file: string, pattern: RegExp): Promise<void> {
  const dest = await freshDir('refused');
  await assert.rejects(extractArchive(file, dest), (error: unknown) => {
    assert.ok(error instanceof TesseraError, String(error));
    assert.equal(error.code, 'INVALID_MODEL_ARCHIVE');
    assert.equal(error.category, 'invalid_argument');
    assert.match(error.message, pattern);
    return true;
  });
  // Nothing is left behind: no target directory, no staging directory.
  await assert.rejects(stat(dest), { code: 'ENOENT' });
  assert.deepEqual((await readdir(work)).filter((name) => name.includes('.extract-')), []);
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'tessera-archive-'));
  modelDir = join(work, 'resnet');
  for (const [path, contents] of Object.entries(MODEL_FILES)) {
    await mkdir(join(modelDir, path, '..'), { recursive: true });
    await writeFile(join(modelDir, path), contents);
  }
  archive = join(work, 'resnet.tar.gz');
});

after(async () => {
  await rm(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});

describe('packModel / inspectArchive / extractArchive', () => {
  test('round trip: every packed file comes back byte for byte', async () => {
    const createdAt = new Date('2025-03-04T05:06:07.000Z');
    const { manifest, skipped, file } = await packModel(modelDir, archive, { tesseraVersion: '1.2.3', createdAt });
    assert.equal(file, archive);
    assert.deepEqual(
      manifest.files.map((f) => f.path),
      ['1/model.onnx', '2/model.onnx', '2/weights/external.bin', 'baseline.json', 'classes.txt', 'config.yaml', 'handler.js', 'labels.txt'],
    );
    assert.deepEqual(skipped, ['notes.md', 'tools/']);
    assert.equal(manifest.name, 'resnet');
    assert.deepEqual(manifest.versions, [1, 2]);
    assert.equal(manifest.created_at, '2025-03-04T05:06:07.000Z');
    assert.equal(manifest.tessera_version, '1.2.3');
    assert.equal(manifest.config_file, 'config.yaml');
    assert.equal(manifest.handler_file, 'handler.js');
    assert.equal(manifest.total_size, manifest.files.reduce((s, f) => s + f.size, 0));
    for (const f of manifest.files) assert.equal(f.sha256, sha256(await readFile(join(modelDir, f.path))), f.path);

    // The manifest is the first entry, readable by any tar.
    assert.equal(readTar(await readFile(archive))[0]?.path, 'MANIFEST.json');

    assert.deepEqual(await inspectArchive(archive), manifest);
    assert.deepEqual(await inspectArchive(archive, { verify: true }), manifest);

    const dest = await freshDir('extracted');
    assert.deepEqual(await extractArchive(archive, dest), manifest);
    for (const f of manifest.files) {
      assert.deepEqual(await readFile(join(dest, f.path)), await readFile(join(modelDir, f.path)), f.path);
    }
    // Readable as directories are by default: 0755, as far as the process's umask lets it be.
    const wanted = 0o755 & ~process.umask();
    assert.equal((await stat(dest)).mode & wanted, wanted, 'the model directory is readable');
    assert.equal(await stat(join(dest, 'MANIFEST.json')).catch(() => undefined), undefined, 'the manifest itself is not extracted');
    assert.equal(await stat(join(dest, 'notes.md')).catch(() => undefined), undefined);
  });

  test('packing is reproducible with a fixed time; name, one version and extra paths can be chosen', async () => {
    const createdAt = new Date('2025-01-01T00:00:00Z');
    const a = join(work, 'a.tar.gz');
    const b = join(work, 'b.tar.gz');
    await packModel(modelDir, a, { tesseraVersion: '1', createdAt });
    await packModel(modelDir, b, { tesseraVersion: '1', createdAt });
    assert.deepEqual(await readFile(a), await readFile(b));

    const { manifest, skipped } = await packModel(modelDir, join(work, 'v2.tar.gz'), {
      tesseraVersion: '1',
      name: 'resnet-v2',
      version: 2,
      include: ['notes.md', 'tools/'],
    });
    assert.equal(manifest.name, 'resnet-v2');
    assert.deepEqual(manifest.versions, [2]);
    assert.ok(!manifest.files.some((f) => f.path.startsWith('1/')));
    assert.ok(manifest.files.some((f) => f.path === 'notes.md'));
    assert.ok(manifest.files.some((f) => f.path === 'tools/convert.py'));
    assert.deepEqual(skipped, []);
  });

  test('symbolic links in the model directory are packed as the files they point to', async () => {
    const dir = join(work, 'linked');
    await mkdir(join(dir, '1'), { recursive: true });
    await symlink(join(modelDir, '1', 'model.onnx'), join(dir, '1', 'model.onnx'));
    const { manifest } = await packModel(dir, join(work, 'linked.tar.gz'), { tesseraVersion: '1' });
    assert.equal(manifest.files[0]?.sha256, sha256(await readFile(join(modelDir, '1', 'model.onnx'))));
    assert.equal(readTar(await readFile(join(work, 'linked.tar.gz')))[1]?.type, 'File');
  });

  test('a symbolic-link cycle is refused, not followed forever', async () => {
    const dir = join(work, 'cycle');
    await mkdir(join(dir, '1'), { recursive: true });
    await writeFile(join(dir, '1', 'model.onnx'), 'x');
    await symlink(join(dir, '1'), join(dir, '1', 'again'));
    await assert.rejects(packModel(dir, join(work, 'cycle.tar.gz'), { tesseraVersion: '1' }), /cannot pack 1\/again: a symbolic link loops back to a directory already packed/);
  });

  test('long paths are carried in PAX headers', async () => {
    const dir = join(work, 'longpaths');
    const deep = `1/${'d'.repeat(120)}/${'f'.repeat(120)}.bin`;
    await mkdir(join(dir, deep, '..'), { recursive: true });
    await writeFile(join(dir, deep), 'deep');
    const file = join(work, 'long.tar.gz');
    await packModel(dir, file, { tesseraVersion: '1' });
    const dest = await freshDir('long');
    await extractArchive(file, dest);
    assert.equal(await readFile(join(dest, deep), 'utf8'), 'deep');
  });

  test('an existing empty directory is a valid target; a non-empty one is refused', async () => {
    const empty = await freshDir('empty');
    await mkdir(empty);
    await extractArchive(archive, empty);
    assert.ok((await readdir(empty)).includes('config.yaml'));
    await assert.rejects(extractArchive(archive, empty), /cannot extract into .*: the directory is not empty/);
  });

  test('directories that cannot be packed', async () => {
    const noVersions = join(work, 'noversions');
    await mkdir(noVersions);
    await writeFile(join(noVersions, 'config.yaml'), '');
    await assert.rejects(packModel(noVersions, join(work, 'x.tar.gz'), { tesseraVersion: '1' }), /no version directories/);
    await assert.rejects(packModel(modelDir, join(work, 'x.tar.gz'), { tesseraVersion: '1', version: 7 }), /no version directory 7 \(found: 1, 2\)/);
    await assert.rejects(packModel(join(work, 'missing'), join(work, 'x.tar.gz'), { tesseraVersion: '1' }), { code: 'INVALID_MODEL_ARCHIVE' });
    await assert.rejects(packModel(modelDir, join(work, 'x.tar.gz'), { tesseraVersion: '1', name: '../evil' }), /model name "..\/evil"/);
    await assert.rejects(packModel(modelDir, join(work, 'x.tar.gz'), { tesseraVersion: '1', include: ['../outside'] }), /include paths are relative/);
    assert.deepEqual((await readdir(work)).filter((n) => n.includes('.partial-')), []);
  });

  test('a model whose config names it cannot be packed under another name (the archive would not load)', async () => {
    const dir = join(work, 'named');
    await mkdir(join(dir, '1'), { recursive: true });
    await writeFile(join(dir, '1', 'model.onnx'), 'x');
    await writeFile(join(dir, 'config.yaml'), 'name: named\n');
    await assert.rejects(packModel(dir, join(work, 'renamed.tar.gz'), { tesseraVersion: '1', name: 'renamed' }), /the config names the model 'named', so an archive of model "renamed" would not load; pack it as 'named'/);
    const { manifest } = await packModel(dir, join(work, 'named.tar.gz'), { tesseraVersion: '1' });
    assert.equal(manifest.name, 'named');
  });
});

describe('tampered archives are refused', () => {
  test('a modified byte', async () => {
    const entries = readTar(await readFile(archive));
    const model = entries.find((e) => e.path === '1/model.onnx')!;
    model.data[1234] = model.data[1234]! ^ 0x01;
    const file = await tampered(entries);
    await refused(file, /^1\/model\.onnx does not match MANIFEST\.json: its SHA-256 is [0-9a-f]{64}, the manifest says [0-9a-f]{64}$/);
    await assert.rejects(inspectArchive(file, { verify: true }), /1\/model\.onnx does not match MANIFEST\.json/);
    await inspectArchive(file); // the manifest alone is still well formed
  });

  test('an extra file', async () => {
    const entries = readTar(await readFile(archive));
    entries.push({ path: '1/backdoor.onnx', data: Buffer.from('evil') });
    await refused(await tampered(entries), /^the archive holds 1\/backdoor\.onnx, which MANIFEST\.json does not list$/);
  });

  test('a missing file', async () => {
    const entries = readTar(await readFile(archive)).filter((e) => e.path !== 'labels.txt');
    await refused(await tampered(entries), /^the archive lacks a file MANIFEST\.json lists: labels\.txt$/);
  });

  test('a file whose size differs from the manifest', async () => {
    const entries = readTar(await readFile(archive));
    entries.find((e) => e.path === 'labels.txt')!.data = Buffer.from('a\nb\nc\n');
    await refused(await tampered(entries), /^labels\.txt is 6 bytes in the archive but 4 in MANIFEST\.json$/);
  });

  test('an edited manifest', async () => {
    const base = readTar(await readFile(archive));
    const manifest = JSON.parse(base[0]!.data.toString('utf8')) as ModelArchiveManifest & Record<string, unknown>;
    const withManifest = (edited: object): RawEntry[] => [manifestEntry(edited), ...base.slice(1)];

    const otherHash = { ...manifest, files: manifest.files.map((f) => (f.path === 'config.yaml' ? { ...f, sha256: sha256('something else') } : f)) };
    await refused(await tampered(withManifest(otherHash)), /^config\.yaml does not match MANIFEST\.json/);

    const dropped = { ...manifest, files: manifest.files.filter((f) => f.path !== 'baseline.json'), total_size: manifest.total_size - 18 };
    await refused(await tampered(withManifest(dropped)), /^the archive holds baseline\.json, which MANIFEST\.json does not list$/);

    await refused(await tampered(withManifest({ ...manifest, total_size: 1 })), /^MANIFEST\.json: total_size is 1 but the files add up to \d+$/);
    await refused(await tampered(withManifest({ ...manifest, versions: [1, 2, 3] })), /^MANIFEST\.json: version 3 has no files$/);
    await refused(await tampered(withManifest({ ...manifest, versions: [1] })), /^MANIFEST\.json: files under 2\/ but version 2 is not listed in versions$/);
    await refused(await tampered(withManifest({ ...manifest, name: '../../etc' })), /^MANIFEST\.json is malformed: name: expected letters, digits, _ \. -$/);
    await refused(await tampered(withManifest({ ...manifest, signed_by: 'me' })), /^MANIFEST\.json is malformed: Unrecognized key: "signed_by"$/);
    await refused(await tampered(withManifest({ ...manifest, format_version: 2 })), /^archive format version 2 is newer than this Tessera reads \(1\)$/);
    await refused(await tampered(withManifest({ ...manifest, files: [...manifest.files].reverse() })), /^MANIFEST\.json: files are not sorted by path$/);
    await refused(await tampered([{ path: 'MANIFEST.json', data: Buffer.from('{"format": ') }, ...base.slice(1)]), /^MANIFEST\.json is not valid JSON/);
  });

  test('a manifest that is not first, or no manifest at all', async () => {
    const entries = readTar(await readFile(archive));
    await refused(await tampered([...entries.slice(1), entries[0]!]), /^MANIFEST\.json must be the first entry of a model archive, found 1\/model\.onnx$/);
    const plain = join(work, 'plain.tar.gz');
    await tarCreate({ gzip: true, file: plain, cwd: modelDir, portable: true }, ['config.yaml']);
    await refused(plain, /^MANIFEST\.json must be the first entry of a model archive, found config\.yaml$/);
    await refused(await tampered([...entries, entries[0]!]), /^the archive holds a second MANIFEST\.json$/);
  });

  test('files that are not archives', async () => {
    const text = join(work, 'not-an-archive.tar.gz');
    await writeFile(text, 'hello, I am not a tarball at all, just some words that go on for a while.\n'.repeat(20));
    await refused(text, /not a valid tar archive|no MANIFEST\.json/);
    const truncated = join(work, 'truncated.tar.gz');
    await writeFile(truncated, (await readFile(archive)).subarray(0, 200));
    await refused(truncated, /cannot read|not a valid tar archive|lacks/);
    await assert.rejects(inspectArchive(join(work, 'nope.tar.gz')), { code: 'INVALID_MODEL_ARCHIVE' });
  });
});

describe('unsafe archives are refused', () => {
  const model = Buffer.from('model');
  const valid = manifestFor({ '1/model.onnx': model });

  test('path traversal with ..', async () => {
    await refused(await tampered([manifestEntry(valid), { path: '1/model.onnx', data: model }, { path: '../evil.txt', data: Buffer.from('x') }]), /^refusing archive entry "\.\.\/evil\.txt": the path contains a '\.\.' segment$/);
    await refused(await tampered([manifestEntry(valid), { path: '1/../../evil.txt', data: Buffer.from('x') }]), /'\.\.' segment/);
    assert.equal(await stat(join(work, '..', 'evil.txt')).catch(() => undefined), undefined);
    // ...also when the manifest itself lists the path.
    const listed = manifestFor({ '1/model.onnx': model, '1/x': model });
    const evil = { ...listed, files: listed.files.map((f) => (f.path === '1/x' ? { ...f, path: '1/../../x' } : f)) };
    await refused(await tampered([manifestEntry(evil)]), /^MANIFEST\.json: file "1\/\.\.\/\.\.\/x" is not a safe path: the path contains a '\.\.' segment$/);
  });

  test('absolute paths, drive letters and backslashes', async () => {
    await refused(await tampered([manifestEntry(valid), { path: '/tmp/evil.txt', data: Buffer.from('x') }]), /^refusing archive entry "\/tmp\/evil\.txt": the path is absolute$/);
    await refused(await tampered([manifestEntry(valid), { path: 'C:/evil.txt', data: Buffer.from('x') }]), /drive letter/);
    await refused(await tampered([manifestEntry(valid), { path: '1\\..\\..\\evil.txt', data: Buffer.from('x') }]), /backslash/);
  });

  test('symbolic links, hard links and devices', async () => {
    await refused(
      await tampered([manifestEntry(valid), { path: '1', data: Buffer.alloc(0), type: 'SymbolicLink', linkpath: '/etc' }, { path: '1/model.onnx', data: model }]),
      /^refusing archive entry 1 -> "\/etc": SymbolicLink entries are not allowed \(only regular files and directories\)$/,
    );
    await refused(
      await tampered([manifestEntry(valid), { path: '1/model.onnx', data: Buffer.alloc(0), type: 'Link', linkpath: '../../../etc/passwd' }]),
      /^refusing archive entry 1\/model\.onnx -> "\.\.\/\.\.\/\.\.\/etc\/passwd": Link entries are not allowed/,
    );
    await refused(await tampered([manifestEntry(valid), { path: '1/dev', data: Buffer.alloc(0), type: 'CharacterDevice' }]), /CharacterDevice entries are not allowed/);
    await refused(await tampered([{ path: 'MANIFEST.json', data: Buffer.alloc(0), type: 'SymbolicLink', linkpath: '/etc/passwd' }]), /SymbolicLink entries are not allowed/);
  });

  test('duplicate entries', async () => {
    await refused(await tampered([manifestEntry(valid), { path: '1/model.onnx', data: model }, { path: '1/model.onnx', data: model }]), /^the archive holds 1\/model\.onnx twice$/);
  });

  test('directory entries are accepted at safe paths', async () => {
    const dest = await freshDir('dirs');
    await extractArchive(await tampered([manifestEntry(valid), { path: '1/', data: Buffer.alloc(0), type: 'Directory' }, { path: '1/model.onnx', data: model }]), dest);
    assert.equal(await readFile(join(dest, '1', 'model.onnx'), 'utf8'), 'model');
  });

  test('size and file-count limits, checked before anything large is written', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024); // compresses ~1000:1
    const bomb = await tampered([manifestEntry(manifestFor({ '1/model.onnx': big })), { path: '1/model.onnx', data: big }]);
    const dest = await freshDir('bomb');
    await assert.rejects(extractArchive(bomb, dest, { maxTotalBytes: 1024 * 1024 }), /^TesseraError: the archive unpacks to 2097152 bytes, more than the 1048576 allowed$/);
    // A manifest that understates the size is caught at the entry's header, before its bytes.
    const lying = { ...manifestFor({ '1/model.onnx': Buffer.alloc(10) }) };
    await assert.rejects(extractArchive(await tampered([manifestEntry(lying), { path: '1/model.onnx', data: big }]), dest, { maxTotalBytes: 1024 * 1024 }), /1\/model\.onnx is 2097152 bytes in the archive but 10 in MANIFEST\.json/);
    const many = manifestFor(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`1/f${i}`, model])));
    await assert.rejects(extractArchive(await tampered([manifestEntry(many)]), dest, { maxFiles: 4 }), /the archive holds 5 files, more than the 4 allowed/);
    await assert.rejects(inspectArchive(bomb, { maxManifestBytes: 100 }), /MANIFEST\.json is \d+ bytes, more than the 100 allowed/);
    await assert.rejects(stat(dest), { code: 'ENOENT' });
  });
});

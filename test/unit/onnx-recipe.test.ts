// The onnx module recipe's selection rules: which package files and which packages go in.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findPackageDir, keepPackageFile, locateRunner, runtimePackages, type ModuleTarget } from '../../agent/images/recipes/onnx.js';

const X64: ModuleTarget = { platform: 'linux', arch: 'x64', libc: 'glibc' };
const ARM64: ModuleTarget = { platform: 'linux', arch: 'arm64', libc: 'glibc' };

t.test('package files: runtime code and this platform\'s binaries only', async (t) => {
  const cases: [string, string, ModuleTarget, boolean][] = [
    ['onnxruntime-node', 'package.json', X64, true],
    ['onnxruntime-node', 'dist/index.js', X64, true],
    ['onnxruntime-node', 'dist/index.js.map', X64, false],
    ['onnxruntime-node', 'dist/index.d.ts', X64, false],
    ['onnxruntime-node', 'lib/backend.ts', X64, false],
    ['onnxruntime-node', 'lib/backend.js', X64, false],
    ['onnxruntime-node', 'script/install.js', X64, false],
    ['onnxruntime-node', 'README.md', X64, false],
    ['onnxruntime-node', 'bin/napi-v6/linux/x64/onnxruntime_binding.node', X64, true],
    ['onnxruntime-node', 'bin/napi-v6/linux/x64/libonnxruntime.so.1', X64, true],
    ['onnxruntime-node', 'bin/napi-v6/linux/arm64/libonnxruntime.so.1', X64, false],
    ['onnxruntime-node', 'bin/napi-v6/linux/arm64/libonnxruntime.so.1', ARM64, true],
    ['onnxruntime-node', 'bin/napi-v6/linux/x64/libonnxruntime.so.1', ARM64, false],
    ['onnxruntime-node', 'bin/napi-v6/darwin/arm64/libonnxruntime.1.dylib', ARM64, false],
    ['onnxruntime-node', 'bin/napi-v6/win32/x64/onnxruntime.dll', X64, false],
    ['onnxruntime-common', 'dist/cjs/package.json', X64, true],
    ['onnxruntime-common', 'dist/esm/index.js', X64, true],
    ['koffi', 'index.js', X64, true],
    ['koffi', 'src/koffi/src/static.js', X64, true],
    ['koffi', 'src/koffi/src/ffi.cc', X64, false],
    ['koffi', 'cnoke.cjs', X64, false],
    ['koffi', 'doc/pages/index.js', X64, false],
    ['koffi', 'LICENSE.txt', X64, true],
    ['@koromix/koffi-linux-x64', 'linux_x64/koffi.node', X64, true],
    ['@koromix/koffi-linux-x64', 'musl_x64/koffi.node', X64, false],
    ['@koromix/koffi-linux-x64', 'musl_x64/koffi.node', { ...X64, libc: 'musl' }, true],
    ['@koromix/koffi-linux-x64', 'linux_x64/koffi.node', { ...X64, libc: 'musl' }, false],
    ['anything', 'node_modules/dep/index.js', X64, false],
  ];
  for (const [pkg, rel, target, keep] of cases) t.equal(keepPackageFile(pkg, rel, target), keep, `${pkg}/${rel} on ${target.arch}/${target.libc}`);
});

function pkg(root: string, dir: string, json: Record<string, unknown>): void {
  mkdirSync(join(root, dir), { recursive: true });
  writeFileSync(join(root, dir, 'package.json'), JSON.stringify(json));
}

t.test('packages: the roots and their runtime dependencies, for the target; install-only ones left out', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'feather-onnx-pkgs-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const nm = 'node_modules';
  pkg(root, `${nm}/onnxruntime-node`, { name: 'onnxruntime-node', dependencies: { 'onnxruntime-common': '1', 'adm-zip': '1', 'global-agent': '1' } });
  pkg(root, `${nm}/onnxruntime-common`, { name: 'onnxruntime-common' });
  pkg(root, `${nm}/koffi`, { name: 'koffi', optionalDependencies: { '@koromix/koffi-linux-x64': '1', '@koromix/koffi-linux-arm64': '1', '@koromix/koffi-win32-x64': '1' } });
  pkg(root, `${nm}/@koromix/koffi-linux-x64`, { name: '@koromix/koffi-linux-x64', os: ['linux'], cpu: ['x64'] });
  pkg(root, `${nm}/@koromix/koffi-linux-arm64`, { name: '@koromix/koffi-linux-arm64', os: ['linux'], cpu: ['arm64'] });
  mkdirSync(join(root, 'dist', 'runner'), { recursive: true });

  const from = join(root, 'dist', 'runner');
  t.equal(findPackageDir('koffi', from), join(root, nm, 'koffi'), 'found from a parent directory');
  t.equal(findPackageDir('absent', from), undefined);
  const got = await runtimePackages(from, { platform: 'linux', arch: 'x64' });
  t.same(got.map((p) => p.name), ['@koromix/koffi-linux-x64', 'koffi', 'onnxruntime-common', 'onnxruntime-node']);
  const arm = await runtimePackages(from, { platform: 'linux', arch: 'arm64' });
  t.ok(arm.some((p) => p.name === '@koromix/koffi-linux-arm64') && !arm.some((p) => p.name === '@koromix/koffi-linux-x64'));

  rmSync(join(root, nm, 'onnxruntime-common'), { recursive: true });
  await t.rejects(runtimePackages(from, { platform: 'linux', arch: 'x64' }), { code: 'RUNTIME_ERROR', message: /onnxruntime-common is not installed/ });
});

t.test('the runner is located beside the sources or the build, or the error says to build', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'feather-onnx-runner-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const moduleUrl = new URL(`file://${root}/agent/images/recipes/onnx.ts`).href;
  t.throws(() => locateRunner(moduleUrl), { code: 'RUNTIME_ERROR', message: /npm run build/ });
  mkdirSync(join(root, 'dist', 'runner'), { recursive: true });
  writeFileSync(join(root, 'dist', 'runner', 'main.js'), '');
  t.equal(locateRunner(moduleUrl), join(root, 'dist', 'runner'), 'from the sources: dist/runner');
  const built = new URL(`file://${root}/dist/agent/images/recipes/onnx.js`).href;
  t.equal(locateRunner(built), join(root, 'dist', 'runner'), 'from the build: its sibling runner/');
});

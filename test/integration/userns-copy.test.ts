// The --userns fallback for kernels without idmapped mounts: a chowned copy of a layer per mapping.
import t from 'tap';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, symlinkSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shiftedLayer } from '../../agent/runtime/userns.js';
import { isRoot } from '../helpers/runtime-fixture.js';

if (!isRoot()) {
  t.pass('skipped: chown needs root');
} else {
  t.test('owners are shifted into the range, modes (setuid too) and symlinks kept, original untouched', async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'feather-shift-'));
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    const layer = join(root, 'layer');
    mkdirSync(join(layer, 'bin'), { recursive: true });
    writeFileSync(join(layer, 'bin/su'), 'x');
    chmodSync(join(layer, 'bin/su'), 0o4755);
    writeFileSync(join(layer, 'home-file'), 'y');
    chownSync(join(layer, 'home-file'), 1000, 1000);
    symlinkSync('/bin/su', join(layer, 'link'));
    const map = { uid: 200000, gid: 300000, size: 65536 };

    const shifted = shiftedLayer(layer, map);
    t.equal(shifted, `${layer}@200000-300000`);
    t.equal(statSync(join(shifted, 'bin/su')).uid, 200000);
    t.equal(statSync(join(shifted, 'bin/su')).gid, 300000);
    t.equal(statSync(join(shifted, 'bin/su')).mode & 0o7777, 0o4755, 'setuid survives the chown');
    t.equal(statSync(join(shifted, 'home-file')).uid, 201000);
    t.equal(lstatSync(join(shifted, 'link')).uid, 200000, 'the symlink itself is shifted');
    t.equal(readlinkSync(join(shifted, 'link')), '/bin/su', 'symlink target kept verbatim');
    t.equal(statSync(join(layer, 'bin/su')).uid, 0, 'the original layer keeps its owners');
    t.equal(shiftedLayer(layer, map), shifted, 'made once per mapping, then reused');
  });
}

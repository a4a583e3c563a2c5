// Image ownership under --userns: container root is an unprivileged host uid, so the image's
// files must appear owned by the mapped range. Without idmapped mounts in the shim, we keep a
// chowned copy of the cached layer per mapping, made once (cache/<sha256>@<uid>-<gid>).
import { chmodSync, cpSync, existsSync, lstatSync, lchownSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export function shiftedLayer(layer: string, map: { uid: number; gid: number; size: number }): string {
  const target = `${layer}@${map.uid}-${map.gid}`;
  if (existsSync(target)) return target;
  const tmp = `${target}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  cpSync(layer, tmp, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  shiftTree(layer, tmp, map);
  renameSync(tmp, target);
  return target;
}

/** Give each copied entry its original's owner shifted into the range (cp does not keep owners). */
function shiftTree(original: string, copy: string, map: { uid: number; gid: number; size: number }): void {
  const st = lstatSync(original);
  const uid = st.uid < map.size ? map.uid + st.uid : map.uid;
  const gid = st.gid < map.size ? map.gid + st.gid : map.gid;
  lchownSync(copy, uid, gid);
  // chown clears setuid/setgid bits; put the original mode back.
  if (!st.isSymbolicLink()) chmodSync(copy, st.mode & 0o7777);
  if (st.isDirectory()) for (const entry of readdirSync(original)) shiftTree(join(original, entry), join(copy, entry), map);
}

// The agent's data layout (../shared/DESIGN.md, "Agent data layout"). Every path is derived here.
import { join } from 'node:path';

export class DataPaths {
  constructor(readonly root: string) {}

  get images(): string { return join(this.root, 'images'); }
  get manifest(): string { return join(this.images, 'manifest.json'); }
  imageTarball(name: string): string { return join(this.images, `${name}.tar.gz`); }
  get cache(): string { return join(this.root, 'cache'); }
  cacheDir(sha256: string): string { return join(this.cache, sha256); }
  get models(): string { return join(this.root, 'models'); }
  modelDir(sha256: string): string { return join(this.models, sha256); }
  get containers(): string { return join(this.root, 'containers'); }
  container(name: string): ContainerPaths { return new ContainerPaths(join(this.containers, name)); }
  /** Temp files (partial downloads, extractions in progress) live here, on the same filesystem, so a rename publishes them. */
  get tmp(): string { return join(this.root, 'tmp'); }
}

export class ContainerPaths {
  constructor(readonly dir: string) {}
  get upper(): string { return join(this.dir, 'upper'); }
  get work(): string { return join(this.dir, 'work'); }
  get rootfs(): string { return join(this.dir, 'rootfs'); }
  /** Written by the agent: what the container is (image, args, limits). */
  get config(): string { return join(this.dir, 'config.json'); }
  /** Written by feather-shim: pid, start, exit (docs/shim-spec.md). */
  get state(): string { return join(this.dir, 'state.json'); }
  get spec(): string { return join(this.dir, 'spec'); }
  get log(): string { return join(this.dir, 'log'); }
  /** The OCI bundle named in CDI hooks' state: an OCI-shaped config.json, written only for hooks. */
  get bundle(): string { return join(this.dir, 'oci'); }
}

// pidusage 4 ships no typings; this is the part the agent uses.
declare module 'pidusage' {
  interface PidusageStatus {
    /** Percent of one core since the previous call for this pid (pidusage keeps a history). */
    cpu: number;
    /** Resident set size, bytes. */
    memory: number;
    ppid: number;
    pid: number;
    /** User + system CPU time, milliseconds. */
    ctime: number;
    elapsed: number;
    timestamp: number;
  }
  interface PidusageOptions {
    usePs?: boolean;
    /** How long a pid's history (and its open /proc/<pid>/stat descriptor) is kept, ms. */
    maxage?: number;
  }
  function pidusage(pid: number | string, options?: PidusageOptions): Promise<PidusageStatus>;
  namespace pidusage {
    function clear(): void;
  }
  export default pidusage;
}

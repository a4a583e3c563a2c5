// Imported before onnxruntime-node (engine.ts's first import), so that it holds when the
// runtime initialises. onnxruntime 1.31's Linux build carries Microsoft's 1DS telemetry: it
// keeps an event database under $XDG_CACHE_HOME (or ~/.cache)/Microsoft/DeveloperTools and
// uploads to events.data.microsoft.com when it finds a CA bundle. A device runner must neither
// phone home nor write outside its own paths, so it is off unless the environment already sets
// ORT_DISABLE_TELEMETRY (an explicit choice, left as it is).
if (process.env['ORT_DISABLE_TELEMETRY'] === undefined) process.env['ORT_DISABLE_TELEMETRY'] = '1';

export {};

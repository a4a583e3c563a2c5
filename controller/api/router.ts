// A small table of routes: "GET /devices/:id" -> handler. Paths are matched segment by segment
// (after the mount prefix); `:name` captures one URL-decoded segment. A path that exists under
// another method answers 405 with Allow; no match at all is a 404.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FeatherError } from '../../shared/errors.js';
import { methodNotAllowed } from './respond.js';

export interface RouteRequest {
  req: IncomingMessage;
  res: ServerResponse;
  params: Readonly<Record<string, string>>;
  query: URLSearchParams;
  /** The path after the mount prefix ("/devices/edge-01"). */
  path: string;
}

/** A JSON reply, or undefined when the handler wrote the response itself. */
export type RouteResult = { status?: number; body: unknown } | undefined;

export type RouteHandler = (r: RouteRequest) => RouteResult | Promise<RouteResult>;

interface Route {
  method: string;
  segments: string[];
  handler: RouteHandler;
}

export type Match = { handler: RouteHandler; params: Record<string, string> };

function split(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: RouteHandler): this {
    this.routes.push({ method: method.toUpperCase(), segments: split(pattern), handler });
    return this;
  }

  /** The handler for method + path; throws 404 or 405 (with Allow). HEAD falls back to GET. */
  match(method: string, path: string): Match {
    const parts = split(path);
    const allowed = new Set<string>();
    let found: Match | undefined;
    for (const r of this.routes) {
      const params = matchSegments(r.segments, parts);
      if (params === undefined) continue;
      allowed.add(r.method);
      if (found === undefined && (r.method === method || (method === 'HEAD' && r.method === 'GET'))) found = { handler: r.handler, params };
    }
    if (found !== undefined) return found;
    if (allowed.size > 0) throw methodNotAllowed(method, path, [...allowed]);
    throw new FeatherError('NOT_FOUND', `no route for ${method} ${path}; featherctl and docs/featherctl.md list the API`);
  }
}

function matchSegments(pattern: readonly string[], parts: readonly string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string;
    const s = parts[i] as string;
    if (p.startsWith(':')) {
      let value: string;
      try {
        value = decodeURIComponent(s);
      } catch {
        return undefined;
      }
      params[p.slice(1)] = value;
    } else if (p !== s) {
      return undefined;
    }
  }
  return params;
}

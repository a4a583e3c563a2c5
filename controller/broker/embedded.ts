// The embedded broker: aedes 1.x (MQTT 3.1.1 only) on a TCP listener (mqtt.port), plus mqtts
// (mqtt.tls.*) and MQTT over WebSocket (mqtt.ws.port) when configured. TCP_NODELAY on every
// accepted socket (with Nagle, a QoS 1 request/reply costs 40-90 ms: docs/mqtt.md, "Latency").
//
// Security lives in the aedes hooks, deny by default (acl.ts):
//   preConnect         remember the client id the client asked for (aedes fills in a random one);
//   authenticate       username + token -> an identity (Credentials.verify); wrong -> CONNACK 4;
//                      a client id the identity may not use -> CONNACK 2;
//   authorizePublish   Acl.canPublish, also for wills (checked when the broker publishes them);
//                      a refused PUBLISH closes the connection (MQTT-3.3.5-2 allows no reply);
//   authorizeSubscribe Acl.canSubscribe; a refused filter gets SUBACK 0x80, the client stays.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { ControllerConfig } from '../config.js';
import { Acl, type Identity } from './acl.js';
import type { Credentials } from './credentials.js';

export interface BrokerPorts {
  mqtt: number;
  mqtts: number | undefined;
  ws: number | undefined;
}

export interface EmbeddedBrokerOptions {
  config: ControllerConfig;
  credentials: Credentials;
  logger: Logger;
}

// CONNACK return codes (MQTT 3.1.1, 3.2.2.3).
const IDENTIFIER_REJECTED = 2;
const BAD_USERNAME_OR_PASSWORD = 4;

function authError(returnCode: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(new FeatherError('INTERNAL', `cannot listen on ${host}:${port}: ${e.message}; is another broker running there? Choose another port or stop it`));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr !== null ? addr.port : port);
    });
  });
}

function closeServer(server: net.Server | http.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

export class EmbeddedBroker {
  readonly name = 'broker';
  readonly acl: Acl;
  private aedes: Aedes | undefined;
  private readonly servers: Array<net.Server | http.Server> = [];
  private wss: WebSocketServer | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly asked = new WeakMap<Client, { clientId: string; clean: boolean }>();
  private readonly identities = new WeakMap<Client, Identity>();
  private readonly byDevice = new Map<string, Set<Client>>();
  private boundPorts: BrokerPorts = { mqtt: 0, mqtts: undefined, ws: undefined };
  private readonly log: Logger;

  constructor(private readonly opts: EmbeddedBrokerOptions) {
    this.acl = new Acl(opts.config.topicPrefix.replace(/\/+$/, ''));
    this.log = opts.logger;
  }

  /** Ports actually bound (a configured 0 picks a free one). */
  get ports(): BrokerPorts {
    return this.boundPorts;
  }

  get connectedClients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  async start(): Promise<void> {
    const { config } = this.opts;
    const aedes = await Aedes.createBroker({
      id: 'feather-controller',
      preConnect: (client, packet, cb) => {
        this.asked.set(client, { clientId: packet.clientId ?? '', clean: packet.clean !== false });
        cb(null, true);
      },
      authenticate: (client, username, password, done) => {
        this.authenticate(client, username, password).then(
          () => done(null, true),
          (e: unknown) => done(e instanceof Error && 'returnCode' in e ? (e as AuthenticateError) : authError(BAD_USERNAME_OR_PASSWORD, messageOf(e)), false),
        );
      },
      authorizePublish: (client, packet, cb) => {
        const identity = client === null ? undefined : this.identities.get(client);
        if (identity !== undefined && this.acl.canPublish(identity, packet.topic)) return cb(null);
        this.log.warn('broker.publish_denied', { clientId: client?.id, identity: describe(identity), topic: packet.topic, action: 'connection closed' });
        cb(new Error(`not authorized to publish to ${packet.topic}`));
      },
      authorizeSubscribe: (client, sub, cb) => {
        const identity = this.identities.get(client);
        if (identity !== undefined && this.acl.canSubscribe(identity, sub.topic)) return cb(null, sub);
        this.log.warn('broker.subscribe_denied', { clientId: client.id, identity: describe(identity), filter: sub.topic });
        cb(null, null);
      },
    });
    this.aedes = aedes;
    aedes.on('clientDisconnect', (client) => this.forget(client));
    aedes.on('clientError', (client, e) => this.log.debug('broker.client_error', { clientId: client.id, error: e.message }));
    aedes.on('connectionError', (client, e) => this.log.debug('broker.connection_error', { clientId: client.id, error: e.message }));

    try {
      const tcp = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
      this.servers.push(tcp);
      const mqttPort = await listen(tcp, config.mqtt.port, config.mqtt.host);
      let mqttsPort: number | undefined;
      if (config.mqtt.tls.cert !== '') {
        const secure = tls.createServer({ cert: readPem('mqtt.tls.cert', config.mqtt.tls.cert), key: readPem('mqtt.tls.key', config.mqtt.tls.key) });
        secure.on('secureConnection', (socket) => this.accept(socket));
        secure.on('tlsClientError', (e) => this.log.debug('broker.tls_error', { error: e.message }));
        this.servers.push(secure);
        mqttsPort = await listen(secure, config.mqtt.tls.port, config.mqtt.host);
      }
      let wsPort: number | undefined;
      if (config.mqtt.ws.port !== 0) {
        const server = http.createServer((_req, res) => { res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket: upgrade required\n'); });
        server.on('connection', (socket: net.Socket) => { socket.setNoDelay(true); this.track(socket); });
        const wss = new WebSocketServer({ server, perMessageDeflate: false });
        wss.on('connection', (ws, req) => { aedes.handle(createWebSocketStream(ws), req); });
        this.wss = wss;
        this.servers.push(server);
        wsPort = await listen(server, config.mqtt.ws.port, config.mqtt.host);
      }
      this.boundPorts = { mqtt: mqttPort, mqtts: mqttsPort, ws: wsPort };
    } catch (e: unknown) {
      await this.stop();
      throw e;
    }
    this.log.info('broker.listening', { host: config.mqtt.host, ...this.boundPorts, protocol: 'MQTT 3.1.1 (aedes)' });
  }

  async stop(): Promise<void> {
    const aedes = this.aedes;
    this.aedes = undefined;
    if (aedes !== undefined) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.wss?.close();
    this.wss = undefined;
    await Promise.all(this.servers.splice(0).map(closeServer));
    this.byDevice.clear();
  }

  /** Close every live connection of a device (after its token was revoked or replaced). */
  disconnectDevice(deviceId: string): number {
    const clients = [...(this.byDevice.get(deviceId) ?? [])];
    for (const c of clients) c.close();
    if (clients.length > 0) this.log.info('broker.device_disconnected', { deviceId, connections: clients.length, reason: 'credentials changed' });
    return clients.length;
  }

  // ---- internals -----------------------------------------------------------------------------

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    this.track(socket);
    const aedes = this.aedes;
    if (aedes === undefined) { socket.destroy(); return; }
    aedes.handle(socket);
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private async authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> {
    const identity = await this.opts.credentials.verify(username, password?.toString('utf8'));
    const remote = remoteOf(client);
    if (identity === undefined) {
      this.log.warn('broker.auth_failed', { username: username ?? null, remote, action: 'CONNACK 4: check the username (device id or admin) and its token' });
      throw authError(BAD_USERNAME_OR_PASSWORD, 'bad user name or password');
    }
    const asked = this.asked.get(client) ?? { clientId: client.id, clean: true };
    if (!this.acl.clientIdAllowed(identity, asked.clientId, asked.clean)) {
      this.log.warn('broker.client_id_refused', { username, clientId: asked.clientId, remote, action: `CONNACK 2: a device uses feather-agent-<id>, <id>/<suffix> or an empty client id` });
      throw authError(IDENTIFIER_REJECTED, 'client identifier not allowed for this user');
    }
    this.identities.set(client, identity);
    if (identity.kind === 'device') {
      let set = this.byDevice.get(identity.deviceId);
      if (set === undefined) this.byDevice.set(identity.deviceId, (set = new Set()));
      set.add(client);
    }
  }

  private forget(client: Client): void {
    const identity = this.identities.get(client);
    if (identity?.kind !== 'device') return;
    const set = this.byDevice.get(identity.deviceId);
    set?.delete(client);
    if (set?.size === 0) this.byDevice.delete(identity.deviceId);
  }
}

function describe(identity: Identity | undefined): string {
  if (identity === undefined) return 'unauthenticated';
  return identity.kind === 'admin' ? 'admin' : `device:${identity.deviceId}`;
}

function remoteOf(client: Client): string | undefined {
  const conn = client.conn as Partial<net.Socket>;
  return typeof conn.remoteAddress === 'string' ? `${conn.remoteAddress}:${conn.remotePort ?? ''}` : undefined;
}

function readPem(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `config ${key}: cannot read ${path} (${messageOf(e)}); point it at a PEM file or leave mqtt.tls.cert and mqtt.tls.key empty`);
  }
}

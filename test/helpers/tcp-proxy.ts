import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy on loopback in front of the test PostgreSQL, to break the
 * network the way a real outage does: drop every open connection, refuse
 * new ones, and come back on the same port.
 */
export interface TcpProxy {
  port: number;
  /** Connections made through the proxy so far. */
  connections(): number;
  /** Closes every open connection abruptly (RST), as a lost network or a killed server does. */
  cut(): void;
  /** Stops listening: new connections are refused (ECONNREFUSED). */
  refuse(): Promise<void>;
  /** Listens again on the same port. */
  accept(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let made = 0;
  const handle = (client: Socket) => {
    made++;
    const upstream = connect(targetPort, targetHost);
    open.add(client);
    open.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  };
  let server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const cut = () => {
    for (const s of open) s.resetAndDestroy();
    open.clear();
  };
  return {
    port,
    connections: () => made,
    cut,
    async refuse() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        cut();
      });
    },
    async accept() {
      server = createServer(handle);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
    },
    async close() {
      cut();
      await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
    },
  };
}

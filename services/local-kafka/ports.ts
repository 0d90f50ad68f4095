// Free local ports for the listeners, probed by binding them.
import { createServer } from 'node:net';

const listenOn = (port: number): Promise<ReturnType<typeof createServer>> =>
  new Promise((resolveServer, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolveServer(server));
  });

const closeServer = (server: ReturnType<typeof createServer>): Promise<void> =>
  new Promise((resolveClose) => server.close(() => resolveClose()));

/** `count` distinct free ports: all sockets are open at once, so no two are the same. */
export const findFreePorts = async (count: number): Promise<number[]> => {
  const servers = await Promise.all(Array.from({ length: count }, () => listenOn(0)));
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('unexpected server address');
    return address.port;
  });
  await Promise.all(servers.map(closeServer));
  return ports;
};

export const isPortFree = async (port: number): Promise<boolean> => {
  try {
    await closeServer(await listenOn(port));
    return true;
  } catch {
    return false;
  }
};

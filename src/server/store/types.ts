/**
 * The seam between meshkit's managers and where shared state lives. The memory
 * implementation serves one instance; the Redis implementation (next) lets many
 * instances share state. Implementations are deliberately dumb and symmetric:
 * logic belongs in the managers above them, written once.
 */
export interface MeshStore {
  /** Records which instance owns a connection. */
  addConnection(connectionId: string, instanceId: string): Promise<void>
  /** Forgets a connection. Removing an unknown connection is not an error. */
  removeConnection(connectionId: string): Promise<void>
  /** The instance that owns a connection, or `undefined` if none does. */
  getConnectionInstance(connectionId: string): Promise<string | undefined>
  /** Ids of the connections an instance owns. */
  getInstanceConnections(instanceId: string): Promise<string[]>
  /** Releases what the store holds open (connections, timers). */
  close(): Promise<void>
}

export type BusHandler = (message: Uint8Array) => void

/** Messages between instances. A message published on a topic reaches every subscriber of it once. */
export interface MeshBus {
  publish(topic: string, message: Uint8Array): Promise<void>
  /** Resolves once messages published afterwards are certain to arrive. */
  subscribe(topic: string, handler: BusHandler): Promise<void>
  unsubscribe(topic: string, handler: BusHandler): Promise<void>
  close(): Promise<void>
}

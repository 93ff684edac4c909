/**
 * `meshkit/mesh/server`: Mesh's server API on meshkit. Everything else of meshkit's
 * server entry is re-exported, so one import line serves a Mesh app.
 */
export { MeshServer, meshServerDefaults, type MeshServerOptions, type MeshContext, type Middleware, type CommandHandler } from './mesh-server.js'
export { Connection, MeshError, ErrorCode, isMeshError, type Guard } from '../../server/index.js'

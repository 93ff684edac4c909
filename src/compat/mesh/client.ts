/**
 * `meshkit/mesh/client`: Mesh's client API on meshkit (browser-safe: no server code).
 */
export { MeshClient, type MeshClientOptions, type MeshEvent, type MeshErrorReply } from './mesh-client.js'
export { MeshError, ErrorCode, isMeshError } from '../../client/index.js'

// The browser build's stand-in for the `ws` package (swapped in by tsup.browser.config.ts):
// the transport imports `ws` only where there is no global WebSocket, which a browser
// always has; this keeps `ws` (and its Node built-ins) out of the bundle.
const BrowserWebSocket = globalThis.WebSocket

export { BrowserWebSocket as WebSocket }
export default BrowserWebSocket

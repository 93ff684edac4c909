// @ts-check
// The chat demo's page: meshkit's browser build, no framework. One room at a time (the
// URL hash): its presence room says who is here and who is typing, its channel holds
// the messages (the newest 50 come as history on join; missed ones after a reconnect).
// Plain JavaScript, type-checked against the example's API (examples/api.ts) by
// `npm run typecheck` through the JSDoc types below.
/** @typedef {import('../api.js').ChatMessage} ChatMessage */
/** @typedef {{ name: string, typing: boolean, tab: string }} PresenceState */

const codec = new URLSearchParams(location.search).get('codec') === 'json' ? 'json' : 'msgpack'
// The JSON-only build is less than half the size; it speaks only `codec: 'json'`.
/** @type {{ MeshClient: typeof import('meshkit/client').MeshClient<import('../api.js').ExampleApi> }} */
const { MeshClient } = await import(codec === 'json' ? '/meshkit/client-json.js' : '/meshkit/client.js')

/** @type {(selector: string) => HTMLElement} */
const $ = (selector) => /** @type {HTMLElement} */ (document.querySelector(selector))
/** @type {(selector: string) => HTMLInputElement} */
const field = (selector) => /** @type {HTMLInputElement} */ (document.querySelector(selector))
/** A MeshError's code, or what was thrown. @param {unknown} error */
const codeOf = (error) => (error instanceof Error && 'code' in error ? String(error.code) : String(error))
const TYPING_IDLE_MS = 2_000
const ROOM_NAME = /^[a-z0-9-]{1,24}$/

const client = new MeshClient(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`, { codec })
Object.assign(window, { demo: { client } })

// A tab keeps its id across reconnects (which bring a new connection id), so that the
// member list shows a tab once while its old connection's presence waits out the server's leave delay.
const tab = sessionStorage.getItem('meshkit-demo-tab') ?? crypto.randomUUID()
sessionStorage.setItem('meshkit-demo-tab', tab)
/** @type {PresenceState} */
const me = { name: localStorage.getItem('meshkit-demo-name') || `guest-${tab.slice(0, 4)}`, typing: false, tab }

/** The room shown, and the presence members by connection id. @type {string | undefined} */
let room
/** @type {Map<string, Partial<PresenceState> | undefined>} */
const members = new Map()

// ---- connection status and latency ----------------------------------------------

/** @type {Record<string, string>} */
const statusText = {
  connecting: 'Connecting…',
  open: 'Connected',
  reconnecting: 'Reconnecting…',
  closed: 'Disconnected. Reload the page to try again.',
}
function showStatus() {
  $('#status').dataset.state = client.state
  $('#status').textContent = statusText[client.state] ?? client.state
  $('#connection-id').textContent = client.id ?? '–'
}
// `disconnect` comes before the client turns to `reconnecting`; read the state once it has.
for (const event of /** @type {const} */ (['connect', 'disconnect', 'reconnect', 'reconnectfailed', 'close'])) {
  client.on(event, () => queueMicrotask(showStatus))
}
client.on('latency', (ms) => {
  $('#latency').dataset.ms = String(ms)
  $('#latency').textContent = `${Math.round(ms)} ms`
})

// After a reconnect the client resumes the channel and rejoins the room by itself; the
// page only says when something could not be recovered.
client.on('recovery', ({ complete, subscribed, retrying }) => {
  if (!complete) notice('gap', 'Some messages may be missing here: more were sent while you were away than the room keeps.')
  if (!subscribed && !retrying) notice('error', 'This room’s messages are no longer live. Reload the page.')
})
client.on('rejoin', ({ joined }) => {
  if (joined) void refreshMembers()
})
client.on('presence', (event) => {
  if (event.room !== `room:${room}`) return
  if (event.type === 'leave') members.delete(event.connectionId)
  else members.set(event.connectionId, /** @type {Partial<PresenceState>} */ (event.state))
  showMembers()
})
client.on('error', (error) => {
  // A failed reconnect attempt: the status line already says the page is reconnecting.
  if (error.code === 'CONNECTION_FAILED') return showStatus()
  notice('error', `${error.code}: ${error.message}`)
})

// ---- messages --------------------------------------------------------------------

/** @param {ChatMessage} message */
function showMessage({ from, name, text }) {
  const item = document.createElement('li')
  item.className = 'message'
  item.dataset.from = from
  const who = document.createElement('span')
  who.className = 'name'
  who.textContent = name
  const what = document.createElement('span')
  what.className = 'text'
  what.textContent = text
  item.append(who, what)
  append(item)
}

/** @param {'gap' | 'error'} kind @param {string} text */
function notice(kind, text) {
  const item = document.createElement('li')
  item.className = 'notice'
  item.dataset.kind = kind
  item.textContent = text
  append(item)
}

/** @param {HTMLLIElement} item */
function append(item) {
  const list = $('#messages')
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40
  list.append(item)
  if (atBottom) list.scrollTop = list.scrollHeight
}

// ---- presence --------------------------------------------------------------------

async function refreshMembers() {
  const shown = room
  const list = await client.presence(`room:${shown}`).catch(() => undefined)
  if (!list || shown !== room) return
  members.clear()
  for (const { connectionId, state } of list) members.set(connectionId, /** @type {Partial<PresenceState>} */ (state))
  showMembers()
}

/** One entry per tab: its newest connection (a reconnected tab's old one may linger a few seconds). */
function showMembers() {
  const byTab = new Map()
  for (const [connectionId, state] of members) {
    const key = typeof state?.tab === 'string' ? state.tab : connectionId
    if (connectionId === client.id || !byTab.has(key)) byTab.set(key, { connectionId, state })
  }
  const items = [...byTab.values()].map(({ connectionId, state }) => {
    const item = document.createElement('li')
    item.className = 'member'
    item.dataset.connectionId = connectionId
    item.dataset.typing = String(state?.typing === true)
    if (connectionId === client.id) item.dataset.self = 'true'
    const name = document.createElement('span')
    name.className = 'name'
    name.textContent = typeof state?.name === 'string' ? state.name : 'anonymous'
    const typing = document.createElement('span')
    typing.className = 'typing'
    typing.textContent = state?.typing === true ? 'typing…' : ''
    item.append(name, typing)
    return item
  })
  $('#members').replaceChildren(...items)
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let typingTimer
/** @param {boolean} typing */
function setTyping(typing) {
  clearTimeout(typingTimer)
  if (typing) typingTimer = setTimeout(() => setTyping(false), TYPING_IDLE_MS)
  if (me.typing === typing) return
  me.typing = typing
  publishPresence()
}

function publishPresence() {
  const shown = room
  client.setPresence(`room:${shown}`, me).catch((error) => notice('error', `Presence: ${error.code}`))
}

// ---- rooms -----------------------------------------------------------------------

/** Switches are queued, so that leaving one room finishes before the next is joined. */
let switching = Promise.resolve()
function enterRoomFromHash() {
  const wanted = decodeURIComponent(location.hash.slice(1)) || 'general'
  const next = ROOM_NAME.test(wanted) ? wanted : 'general'
  switching = switching.then(() => enterRoom(next)).catch((error) => notice('error', `Could not enter ${next}: ${codeOf(error)}`))
}

/** @param {string} next */
async function enterRoom(next) {
  if (next === room) return
  if (room) await Promise.all([client.leaveRoom(`room:${room}`), client.unsubscribe(`chat:${room}`)])
  room = next
  me.typing = false
  members.clear()
  $('#messages').replaceChildren()
  $('#room-title').textContent = `#${next}`
  document.title = `#${next} · meshkit chat`
  document.querySelectorAll('#rooms a').forEach((link) => {
    if (/** @type {HTMLAnchorElement} */ (link).hash === `#${next}`) link.setAttribute('aria-current', 'page')
    else link.removeAttribute('aria-current')
  })
  const { history } = await client.subscribe(`chat:${next}`, showMessage, { historyLimit: 50 })
  for (const message of history.reverse()) showMessage(message)
  await client.joinRoom(`room:${next}`, { presence: me })
  await refreshMembers()
}

// ---- the page's controls -----------------------------------------------------------

field('#name').value = me.name
$('#name').addEventListener('change', () => {
  me.name = field('#name').value.trim().slice(0, 32) || me.name
  localStorage.setItem('meshkit-demo-name', me.name)
  publishPresence()
})
$('#text').addEventListener('input', () => setTyping(field('#text').value !== ''))
$('#composer').addEventListener('submit', (event) => {
  event.preventDefault()
  const text = field('#text').value.trim()
  if (!text || !room) return
  field('#text').value = ''
  setTyping(false)
  client.command('say', { room, name: me.name, text }).catch((error) => notice('error', `Not sent: ${error.code}`))
})
window.addEventListener('hashchange', enterRoomFromHash)

$('#codec').textContent = codec
showStatus()
try {
  await client.connect()
  showStatus()
  enterRoomFromHash()
} catch (error) {
  showStatus()
  notice('error', `Could not connect: ${codeOf(error)}`)
}

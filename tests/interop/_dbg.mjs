import './lib/client-runtime.mjs'
const Base = globalThis.WebSocket
const t0 = Date.now()
globalThis.WebSocket = class extends Base {
  constructor(url, ...r) {
    super(url, ...r)
    const port = new URL(url).port
    this.addEventListener('open', () => console.error(Date.now()-t0, port, 'OPEN'))
    this.addEventListener('close', () => console.error(Date.now()-t0, port, 'CLOSE'))
    this.addEventListener('message', (e) => { const f = JSON.parse(e.data); console.error(Date.now()-t0, port, '<', f._tag, f.requestId?.context ?? f.requestId, f.batch ? f.batch.map(b => b.eventEncoded.seqNum).join(',') : '', f.message ?? '') })
  }
  send(d, ...r) { const f = JSON.parse(d); console.error(Date.now()-t0, new URL(this.url).port, '>', f._tag, f.requestId, f.batch ? f.batch.map(b => `${b.parentSeqNum}->${b.seqNum}`).join(',') : ''); return super.send(d, ...r) }
}
const { offlineWriter } = await import('./scenarios/offline-writer.mjs')
const storeId = 'dbg' + Date.now()
const res = await offlineWriter({ urls: ['ws://127.0.0.1:18001'], storeId, authToken: 't', syncWaitMs: 10000 })
console.error(JSON.stringify(res.steps), JSON.stringify(res.offlineClient))
process.exit(0)

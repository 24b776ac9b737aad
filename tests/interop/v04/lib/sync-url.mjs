/**
 * The URLs the 0.4.0 clients request for a store: `<url>?storeId=…&payload=…&transport=ws|http`, where the payload
 * is URI-encoded JSON that the query builder form-encodes once more (the client's `SearchParamsSchema` +
 * `UrlParams.toString`). Both transports take `ws://` or `http://` base URLs; we give each its natural scheme.
 */
export const transportUrl = (url, transport) =>
  transport === 'http' ? url.replace(/^ws(s?):/, 'http$1:') : url.replace(/^http(s?):/, 'ws$1:')

export const syncUrl = (url, storeId, payload, transport) =>
  `${transportUrl(url, transport)}?${new URLSearchParams({
    storeId,
    payload: encodeURIComponent(JSON.stringify(payload)),
    transport,
  })}`

/**
 * The socket URL `makeCfSync({ url })` opens for a store: `?storeId=…&payload=…`, where the payload is
 * URI-encoded JSON that the query builder form-encodes once more.
 */
export const syncSocketUrl = (url, storeId, payload) =>
  `${url}/websocket?${new URLSearchParams({ storeId, payload: encodeURIComponent(JSON.stringify(payload)) })}`

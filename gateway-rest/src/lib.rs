//! HTTPS JSON REST and WebSocket API for retail apps. Filled by the gateway-rest issue.

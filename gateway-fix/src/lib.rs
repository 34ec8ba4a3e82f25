//! FIX 4.4 acceptor for institutional clients (session layer and order entry). Filled by the gateway-fix issue.

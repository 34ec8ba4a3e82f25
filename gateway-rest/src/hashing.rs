//! Hash maps on the request path, keyed by values a client picks or
//! influences (API key ids, client order ids, addresses, signatures):
//! aHash with random keys (`RandomState` with `runtime-rng`: seeded from the
//! OS once per process, varied per map), so flooding one
//! bucket needs the keys, as with std's SipHash, at a fraction of the cost
//! (an order touched about twenty such maps; SipHash showed in its profile).

pub type Map<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
pub type Set<K> = std::collections::HashSet<K, ahash::RandomState>;

//! Weighted rate limits per IP and per API key (sans-IO), Binance style:
//! every route has a weight, each caller has a budget per fixed one-minute
//! window, a request over budget gets 429 with Retry-After, and a caller that
//! keeps hammering after 429s is banned for a while, longer each time.

use std::hash::Hash;
use std::net::IpAddr;

use crate::hashing::Map;

pub const WINDOW_MS: u64 = 60_000;

#[derive(Clone, Copy, Debug)]
pub struct RateConfig {
    /// Weight per minute per IP address.
    pub ip_weight_per_min: u32,
    /// Weight per minute per API key (or token account).
    pub key_weight_per_min: u32,
    /// 429s within one window that trigger a ban.
    pub strikes_to_ban: u32,
    /// First ban length; doubles with each ban up to `max_ban_ms`.
    pub ban_ms: u64,
    pub max_ban_ms: u64,
    /// Tracked callers per kind (memory bound); expired entries are swept first.
    pub max_tracked: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            ip_weight_per_min: 6_000,
            key_weight_per_min: 3_000,
            strikes_to_ban: 20,
            ban_ms: 120_000,
            max_ban_ms: 3_600_000,
            max_tracked: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Window {
    start: u64,
    used: u32,
    strikes: u32,
    banned_until: u64,
    bans: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// Over budget; retry after this many seconds.
    Over {
        retry_after_s: u64,
        used: u32,
    },
    Banned {
        retry_after_s: u64,
    },
}

struct Table<K> {
    map: Map<K, Window>,
}

impl<K: Hash + Eq> Table<K> {
    fn charge<Q>(&mut self, cfg: &RateConfig, k: &Q, weight: u32, limit: u32, now: u64) -> Result<u32, Limited>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !self.map.contains_key(k) {
            if self.map.len() >= cfg.max_tracked {
                self.map.retain(|_, w| w.start + WINDOW_MS > now || w.banned_until > now);
            }
            // The key is copied only for a new caller (not on every request).
            self.map.insert(k.to_owned(), Window::default());
        }
        let w = self.map.get_mut(k).expect("inserted above");
        if w.banned_until > now {
            return Err(Limited::Banned { retry_after_s: (w.banned_until - now).div_ceil(1000) });
        }
        if now >= w.start + WINDOW_MS {
            w.start = now - now % WINDOW_MS;
            w.used = 0;
            w.strikes = 0;
        }
        if w.used.saturating_add(weight) > limit {
            w.strikes += 1;
            if w.strikes >= cfg.strikes_to_ban {
                let len = cfg.ban_ms.saturating_mul(1 << w.bans.min(16)).min(cfg.max_ban_ms);
                w.banned_until = now + len;
                w.bans += 1;
                w.strikes = 0;
                return Err(Limited::Banned { retry_after_s: len.div_ceil(1000) });
            }
            return Err(Limited::Over { retry_after_s: (w.start + WINDOW_MS - now).div_ceil(1000), used: w.used });
        }
        w.used += weight;
        Ok(w.used)
    }

    fn used<Q>(&self, k: &Q, now: u64) -> u32
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(k).filter(|w| now < w.start + WINDOW_MS).map(|w| w.used).unwrap_or(0)
    }
}

pub struct RateLimiter {
    pub cfg: RateConfig,
    ips: Table<IpAddr>,
    keys: Table<String>,
}

/// Weight used in the current window after a request was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    pub ip: u32,
    pub key: Option<u32>,
}

impl RateLimiter {
    pub fn new(cfg: RateConfig) -> Self {
        RateLimiter { cfg, ips: Table { map: Map::default() }, keys: Table { map: Map::default() } }
    }

    /// Charges `weight` to the IP and, when given, to the key.
    pub fn charge(&mut self, ip: IpAddr, key: Option<&str>, weight: u32, now_ms: u64) -> Result<Used, Limited> {
        let cfg = self.cfg;
        let ip_used = self.ips.charge(&cfg, &ip, weight, cfg.ip_weight_per_min, now_ms)?;
        let key_used = match key {
            Some(k) => Some(self.keys.charge(&cfg, k, weight, cfg.key_weight_per_min, now_ms)?),
            None => None,
        };
        Ok(Used { ip: ip_used, key: key_used })
    }

    /// Charges only the key (after the IP was charged and the key verified).
    pub fn charge_key(&mut self, key: &str, weight: u32, now_ms: u64) -> Result<u32, Limited> {
        let cfg = self.cfg;
        self.keys.charge(&cfg, key, weight, cfg.key_weight_per_min, now_ms)
    }

    pub fn used_ip(&self, ip: IpAddr, now_ms: u64) -> u32 {
        self.ips.used(&ip, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_429_and_ban_escalation() {
        let cfg = RateConfig {
            ip_weight_per_min: 10,
            key_weight_per_min: 5,
            strikes_to_ban: 3,
            ban_ms: 1_000,
            ..Default::default()
        };
        let mut r = RateLimiter::new(cfg);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t = 60_000 * 100;
        assert_eq!(r.charge(ip, Some("k"), 5, t), Ok(Used { ip: 5, key: Some(5) }));
        assert!(matches!(r.charge(ip, Some("k"), 1, t), Err(Limited::Over { .. })));
        assert_eq!(r.charge(ip, None, 4, t).unwrap().ip, 10, "the IP budget is separate");
        assert!(matches!(r.charge(ip, None, 1, t + 1), Err(Limited::Over { retry_after_s: 60, .. })));
        assert!(matches!(r.charge(ip, None, 1, t + 2), Err(Limited::Over { .. })));
        // third strike in the window: banned
        assert_eq!(r.charge(ip, None, 1, t + 3), Err(Limited::Banned { retry_after_s: 1 }));
        assert!(matches!(r.charge(ip, None, 1, t + 500), Err(Limited::Banned { .. })));
        // a new window after the ban: allowed again
        assert!(r.charge(ip, None, 1, t + 60_000).is_ok());
        // second ban is twice as long
        for i in 0..12 {
            let _ = r.charge(ip, None, 1, t + 60_001 + i);
        }
        assert_eq!(r.charge(ip, None, 1, t + 60_100), Err(Limited::Banned { retry_after_s: 2 }));
    }

    #[test]
    fn memory_is_bounded() {
        let cfg = RateConfig { max_tracked: 100, ..Default::default() };
        let mut r = RateLimiter::new(cfg);
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            // each in a later window so the sweep can drop the old ones
            let _ = r.charge(ip, None, 1, u64::from(i) * WINDOW_MS);
        }
        assert!(r.ips.map.len() <= 101);
    }
}

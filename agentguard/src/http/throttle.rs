//! A limit on wrong tokens per client address: after too many in a window, the address gets `429` for a while.
//!
//! Only a request that carries a token which is refused counts (no `Authorization` header at all is not a guess).
//! While an address is blocked every API request from it is refused before its token is looked at, a right one too:
//! if a right token let a blocked address in, the `429` itself would tell a guesser which guess was right, and the
//! block would not slow guessing at all. A person who mistyped their token waits out the block (the answer's
//! `Retry-After` says how long); other addresses are never affected. IPv6 addresses count by their /64 prefix (one
//! host usually holds a whole /64), IPv4 ones each on their own.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};

/// Wrong tokens from one address within [`DEFAULT_AUTH_FAILURE_WINDOW`] that block it, by default: 10.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 10;

/// The window in which [`DEFAULT_MAX_AUTH_FAILURES`] wrong tokens block an address, by default: 60 s.
pub const DEFAULT_AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// How long a blocked address gets `429`, by default: 60 s.
pub const DEFAULT_AUTH_BLOCK: Duration = Duration::from_secs(60);

/// At most this many addresses are tracked at once; when full, the stalest one that is not blocked makes room.
const MAX_TRACKED: usize = 4096;

/// The failure counts, by address.
#[derive(Debug)]
pub(crate) struct Throttle {
    max_failures: u32,
    window: Duration,
    block: Duration,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Throttle {
    pub(crate) fn new(max_failures: u32, window: Duration, block: Duration) -> Self {
        Throttle {
            max_failures,
            window,
            block,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `ip` is still blocked, if it is.
    pub(crate) fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let until = self.table().get(&key(ip))?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a wrong token from `ip`; blocks it at the limit.
    pub(crate) fn failure(&self, ip: IpAddr, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let key = key(ip);
        let mut table = self.table();
        if !table.contains_key(&key) && table.len() >= MAX_TRACKED {
            let (window, block) = (self.window, self.block);
            table.retain(|_, e| e.blocked_until.is_some_and(|u| u > now) || now < e.window_start + window.max(block));
            if table.len() >= MAX_TRACKED {
                let stalest = table
                    .iter()
                    .filter(|(_, e)| e.blocked_until.is_none_or(|u| u <= now))
                    .min_by_key(|(_, e)| e.window_start)
                    .map(|(k, _)| *k);
                match stalest {
                    Some(k) => {
                        table.remove(&k);
                    }
                    None => return, // every tracked address is blocked: this one is not counted until one frees
                }
            }
        }
        let entry = table.entry(key).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if entry.blocked_until.is_some_and(|u| u > now) {
            return;
        }
        if entry.blocked_until.is_some() || now.duration_since(entry.window_start) >= self.window {
            *entry = Entry {
                window_start: now,
                failures: 0,
                blocked_until: None,
            };
        }
        entry.failures += 1;
        if entry.failures >= self.max_failures {
            entry.blocked_until = Some(now + self.block);
        }
    }
}

/// The address a limit applies to: an IPv4 address (also when mapped into IPv6), or an IPv6 /64 prefix.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Middleware on the API routes: refuses a blocked address with 429, and counts each refused token.
///
/// The peer address comes from [`ConnectInfo`], which [`serve`](super::serve) provides (as does axum's
/// `into_make_service_with_connect_info::<SocketAddr>()`); without it there is no address to limit, and requests pass.
pub(crate) async fn limit(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let Some(ip) = ip else {
        return next.run(request).await;
    };
    if let Some(left) = s.throttle.blocked(ip, Instant::now()) {
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_auth_failures",
            format!("too many wrong API tokens from this address: try again in {seconds} s with the right token"),
        )
        .retry_after(seconds)
        .into_response();
    }
    let presented = request.headers().contains_key(header::AUTHORIZATION);
    let response = next.run(request).await;
    if presented && response.status() == StatusCode::UNAUTHORIZED {
        s.throttle.failure(ip, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn the_tenth_failure_in_a_window_blocks_that_address_only_for_the_block_time() {
        let t = Throttle::new(10, Duration::from_secs(60), Duration::from_secs(30));
        let now = Instant::now();
        for i in 0..9 {
            t.failure(A, now + Duration::from_secs(i));
        }
        assert_eq!(t.blocked(A, now + Duration::from_secs(9)), None, "nine are allowed");
        t.failure(A, now + Duration::from_secs(9));
        assert_eq!(
            t.blocked(A, now + Duration::from_secs(10)),
            Some(Duration::from_secs(29))
        );
        assert_eq!(
            t.blocked(B, now + Duration::from_secs(10)),
            None,
            "other addresses are not affected"
        );
        assert_eq!(t.blocked(A, now + Duration::from_secs(39)), None, "the block ends");
        t.failure(A, now + Duration::from_secs(40));
        assert_eq!(
            t.blocked(A, now + Duration::from_secs(40)),
            None,
            "and the count starts over"
        );
    }

    #[test]
    fn failures_spread_over_more_than_a_window_never_block() {
        let t = Throttle::new(10, Duration::from_secs(60), Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..100 {
            t.failure(A, now + Duration::from_secs(7 * i));
            assert_eq!(t.blocked(A, now + Duration::from_secs(7 * i)), None, "failure {i}");
        }
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let t = Throttle::new(2, Duration::from_secs(60), Duration::from_secs(60));
        let now = Instant::now();
        t.failure("2001:db8::1".parse().unwrap(), now);
        t.failure("2001:db8::2".parse().unwrap(), now);
        assert!(t.blocked("2001:db8::ffff".parse().unwrap(), now).is_some());
        assert!(t.blocked("2001:db8:0:1::1".parse().unwrap(), now).is_none());
        t.failure("::ffff:192.0.2.1".parse().unwrap(), now);
        t.failure(A, now);
        assert!(t.blocked(A, now).is_some());
    }

    #[test]
    fn the_table_is_bounded_and_keeps_blocked_addresses() {
        let t = Throttle::new(1, Duration::from_secs(60), Duration::from_secs(60));
        let now = Instant::now();
        t.failure(A, now);
        let t2 = Throttle::new(2, Duration::from_secs(60), Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 10) {
            t2.failure(IpAddr::V4(i.into()), now);
        }
        assert!(t2.table().len() <= MAX_TRACKED);
        for i in 0..(MAX_TRACKED as u32 + 10) {
            t.failure(IpAddr::V4((i + 1_000_000).into()), now);
        }
        assert!(t.table().len() <= MAX_TRACKED);
        assert!(t.blocked(A, now).is_some(), "a blocked address is not pushed out");
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let t = Throttle::new(0, Duration::from_secs(60), Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..100 {
            t.failure(A, now);
        }
        assert_eq!(t.blocked(A, now), None);
    }
}

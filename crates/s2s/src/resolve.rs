//! Where a domain's XMPP server is (RFC 6120 §3.2, XEP-0368) and how to reach it:
//! a static route, else `_xmpps-server._tcp` (direct TLS) and `_xmpp-server._tcp` (STARTTLS)
//! SRV records ordered by priority and weighted choice (RFC 2782), else the domain itself on
//! port 5269; then a happy-eyeballs connection to the first address that answers (RFC 8305).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use rand::Rng;
use tokio::net::TcpStream;

use crate::config::parse_host_port;
use crate::error::S2sError;

/// One place to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS from the first byte (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
}

/// One SRV record, as far as ordering is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative share among records of equal priority.
    pub weight: u16,
    /// The target.
    pub target: Target,
}

/// RFC 2782 ordering: ascending priority; within a priority, a weighted random draw repeated
/// until none is left (records of weight 0 rarely first). `pick(total)` returns a number in
/// `0..=total`, injectable so tests are deterministic. At equal priority and weight, direct
/// TLS goes first (XEP-0368 §2.2: it saves a round trip).
pub fn order_srv(mut records: Vec<Srv>, mut pick: impl FnMut(u32) -> u32) -> Vec<Target> {
    records.sort_by_key(|r| (r.priority, !r.target.direct_tls));
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let prio = records[i].priority;
        let end = records[i..]
            .iter()
            .position(|r| r.priority != prio)
            .map_or(records.len(), |n| i + n);
        let mut group: Vec<Srv> = records[i..end].to_vec();
        // RFC 2782: zero-weight records first in the list, so they get a small chance.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let n = pick(total).min(total);
            let mut running = 0;
            let idx = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= n
                })
                .unwrap_or(0);
            out.push(group.remove(idx).target);
        }
        i = end;
    }
    out
}

/// Name resolution for outgoing connections.
pub struct Resolver {
    dns: Option<TokioResolver>,
    routes: BTreeMap<String, String>,
}

impl Resolver {
    /// Uses the system's resolver configuration; `routes` short-circuit DNS.
    pub fn new(routes: BTreeMap<String, String>, timeout: Duration) -> Resolver {
        let built = TokioResolver::builder_tokio().and_then(|mut b| {
            b.options_mut().timeout = timeout;
            b.options_mut().attempts = 2;
            b.build()
        });
        let dns = match built {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("no usable DNS configuration ({e}); only s2s.routes will work");
                None
            }
        };
        let routes = routes
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Resolver { dns, routes }
    }

    /// The targets to try for `domain`, best first.
    pub async fn targets(&self, domain: &str) -> Result<Vec<Target>, S2sError> {
        if let Some(route) = self.routes.get(&domain.to_ascii_lowercase()) {
            let (host, port) = parse_host_port(route)
                .ok_or_else(|| S2sError::Dns(format!("static route {route:?} is not host:port")))?;
            return Ok(vec![Target {
                host,
                port,
                direct_tls: false,
            }]);
        }
        let dns = self.dns()?;
        let fqdn = |service: &str| format!("{service}.{domain}.");
        let (tls, plain) = tokio::join!(
            dns.lookup(fqdn("_xmpps-server._tcp"), RecordType::SRV),
            dns.lookup(fqdn("_xmpp-server._tcp"), RecordType::SRV),
        );
        let mut records = Vec::new();
        let mut dns_errors = Vec::new();
        for (result, direct_tls) in [(tls, true), (plain, false)] {
            match result {
                Ok(lookup) => {
                    for r in lookup.answers() {
                        if let RData::SRV(srv) = &r.data {
                            records.push(Srv {
                                priority: srv.priority,
                                weight: srv.weight,
                                target: Target {
                                    host: srv.target.to_ascii().trim_end_matches('.').to_owned(),
                                    port: srv.port,
                                    direct_tls,
                                },
                            });
                        }
                    }
                }
                Err(e) if e.is_no_records_found() => {}
                Err(e) => dns_errors.push(e.to_string()),
            }
        }
        // RFC 2782: a single record whose target is "." says the service is not offered.
        if records.len() == 1 && records[0].target.host.is_empty() {
            return Err(S2sError::Dns(format!(
                "{domain} publishes that it offers no XMPP server service (SRV target \".\")"
            )));
        }
        records.retain(|r| !r.target.host.is_empty());
        if records.is_empty() {
            if !dns_errors.is_empty() {
                tracing::debug!(
                    domain,
                    "SRV lookups failed: {dns_errors:?}; trying {domain}:5269"
                );
            }
            // RFC 6120 §3.2.2: fall back to the domain itself on the default port.
            return Ok(vec![Target {
                host: domain.to_owned(),
                port: 5269,
                direct_tls: false,
            }]);
        }
        let mut rng = rand::thread_rng();
        Ok(order_srv(records, |total| rng.gen_range(0..=total)))
    }

    fn dns(&self) -> Result<&TokioResolver, S2sError> {
        self.dns
            .as_ref()
            .ok_or_else(|| S2sError::Dns("no DNS resolver is configured on this machine".into()))
    }

    /// The addresses of a target host, IPv6 and IPv4 interleaved (RFC 8305 §4).
    pub async fn addresses(&self, target: &Target) -> Result<Vec<SocketAddr>, S2sError> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        let dns = self.dns()?;
        let lookup = dns
            .lookup_ip(format!("{}.", target.host))
            .await
            .map_err(|e| {
                if e.is_nx_domain() {
                    S2sError::Dns(format!("{} does not exist (NXDOMAIN)", target.host))
                } else if e.is_no_records_found() {
                    S2sError::Dns(format!("{} has no A or AAAA record", target.host))
                } else {
                    S2sError::Dns(format!("looking up {}: {e}", target.host))
                }
            })?;
        let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) = lookup.iter().partition(IpAddr::is_ipv6);
        let mut out = Vec::new();
        let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => break,
                (x, y) => out.extend(
                    x.into_iter()
                        .chain(y)
                        .map(|ip| SocketAddr::new(ip, target.port)),
                ),
            }
        }
        Ok(out)
    }
}

/// Delay between starting connection attempts to successive addresses (RFC 8305 §5).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connects to the first of `addrs` that accepts; later attempts start staggered while
/// earlier ones are still pending. The error lists what each address answered.
pub async fn happy_eyeballs(addrs: &[SocketAddr]) -> Result<(TcpStream, SocketAddr), S2sError> {
    let mut attempts: FuturesUnordered<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| async move {
            tokio::time::sleep(ATTEMPT_DELAY * i as u32).await;
            (*addr, TcpStream::connect(addr).await)
        })
        .collect();
    let mut errors = Vec::new();
    while let Some((addr, r)) = attempts.next().await {
        match r {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok((s, addr));
            }
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(S2sError::Connect(if errors.is_empty() {
        "no address to connect to".into()
    } else {
        errors.join("; ")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, host: &str, direct_tls: bool) -> Srv {
        Srv {
            priority,
            weight,
            target: Target {
                host: host.into(),
                port: 5269,
                direct_tls,
            },
        }
    }

    fn hosts(t: &[Target]) -> Vec<&str> {
        t.iter().map(|t| t.host.as_str()).collect()
    }

    #[test]
    fn priority_first_then_weight() {
        let recs = vec![
            srv(20, 0, "backup", false),
            srv(10, 60, "big", false),
            srv(10, 40, "small", false),
        ];
        // Draw 0..=100: a pick up to 60 lands on "big", above it on "small".
        assert_eq!(
            hosts(&order_srv(recs.clone(), |_| 10)),
            ["big", "small", "backup"]
        );
        assert_eq!(
            hosts(&order_srv(recs.clone(), |t| t)),
            ["small", "big", "backup"]
        );
        assert_eq!(
            hosts(&order_srv(recs, |t| if t == 100 { 61 } else { 0 })),
            ["small", "big", "backup"]
        );
    }

    #[test]
    fn zero_weight_only_when_drawn_zero_and_direct_tls_preferred_on_ties() {
        let recs = vec![srv(0, 5, "w5", false), srv(0, 0, "w0", false)];
        assert_eq!(hosts(&order_srv(recs.clone(), |_| 0)), ["w0", "w5"]);
        assert_eq!(hosts(&order_srv(recs, |_| 3)), ["w5", "w0"]);
        let recs = vec![srv(0, 0, "starttls", false), srv(0, 0, "tls", true)];
        assert_eq!(hosts(&order_srv(recs, |_| 0)), ["tls", "starttls"]);
    }

    #[tokio::test]
    async fn static_route_skips_dns() {
        let mut routes = BTreeMap::new();
        routes.insert("Peer.Test".to_owned(), "127.0.0.1:5299".to_owned());
        let r = Resolver::new(routes, Duration::from_secs(1));
        let t = r.targets("peer.test").await.unwrap();
        assert_eq!(
            t,
            [Target {
                host: "127.0.0.1".into(),
                port: 5299,
                direct_tls: false
            }]
        );
        assert_eq!(
            r.addresses(&t[0]).await.unwrap(),
            ["127.0.0.1:5299".parse::<SocketAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn refused_port_names_the_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = happy_eyeballs(&[addr]).await.unwrap_err().to_string();
        assert!(
            e.contains(&addr.to_string()) && e.contains("refused"),
            "{e}"
        );
    }
}

//! The watchdog's own probes (layer 3): HTTP and TCP, each bounded by its timeout.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use selfheal_core::{ProbeFailure, ProbeKind, ProbeOutcome, ProbeTarget, Unobservable};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The largest body read when a probe looks for expected text.
const MAX_BODY: usize = 64 * 1024;

/// Runs probes. Each HTTP probe is one GET on a fresh connection (HTTP/1.1 with
/// `Connection: close`), so it sees the service as a new client would; no pool, no redirects,
/// no DNS unless the target names a host. Built on hyper's connection API directly: a probe
/// costs one connect, one request and one read.
#[derive(Debug, Clone)]
pub struct Prober {
    /// When probing began: schedules begun within one interval of it are spread ([`schedule`]).
    started: Instant,
}

const USER_AGENT: &str = concat!("selfheal/", env!("CARGO_PKG_VERSION"));

impl Default for Prober {
    fn default() -> Self {
        Self {
            started: Instant::now(),
        }
    }
}

impl Prober {
    pub fn new() -> Result<Self, std::io::Error> {
        Ok(Self::default())
    }

    /// Probes `target`; `own_addr` is the container's address for targets without a host.
    /// What keeps the watchdog itself from looking (a name that does not resolve, no address,
    /// no descriptors left) is [`ProbeOutcome::Unobservable`], never a failure.
    pub async fn probe(
        &self,
        target: &ProbeTarget,
        own_addr: Option<IpAddr>,
        timeout: Duration,
    ) -> (ProbeOutcome, Duration) {
        let (outcome, took, _) = self.probe_detailed(target, own_addr, timeout).await;
        (outcome, took)
    }

    /// As [`Self::probe`], with what the HTTP answer showed (for an incident's evidence).
    pub async fn probe_detailed(
        &self,
        target: &ProbeTarget,
        own_addr: Option<IpAddr>,
        timeout: Duration,
    ) -> (ProbeOutcome, Duration, ProbeDetail) {
        let mut detail = ProbeDetail::default();
        let started = Instant::now();
        let deadline = started + timeout;
        let result = async {
            let addr = resolve(target, own_addr, deadline).await?;
            let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
                .await
                .map_err(|_| Err(ProbeFailure::Timeout))?
                .map_err(|e| connect_error(&e))?;
            match target.kind {
                ProbeKind::Tcp => Ok(()),
                ProbeKind::Http => http(stream, addr, target, deadline, &mut detail)
                    .await
                    .map_err(Err),
            }
        }
        .await;
        let outcome = match result {
            Ok(()) => ProbeOutcome::Passed,
            Err(Err(f)) => ProbeOutcome::Failed(f),
            Err(Ok(u)) => ProbeOutcome::Unobservable(u),
        };
        (outcome, started.elapsed(), detail)
    }
}

/// What an HTTP probe's answer showed: its status and, for a failure, the head of its body
/// (at most [`BODY_EXCERPT_BYTES`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeDetail {
    pub http_status: Option<u16>,
    pub body_excerpt: Option<String>,
}

/// How long a failed status waits for its body's head.
const EXCERPT_WAIT: Duration = Duration::from_millis(100);
/// Body bytes kept for a failed probe's evidence.
const BODY_EXCERPT_BYTES: usize = crate::evidence::BODY_EXCERPT_BYTES;

/// Why a probe did not get through: the container's failure (`Err`) or the watchdog's own
/// trouble (`Ok`).
type Blocked = Result<Unobservable, ProbeFailure>;

/// A refused or reset connection is the container's; running out of descriptors or memory
/// is the watchdog's (EMFILE, ENFILE, ENOBUFS, ENOMEM).
fn connect_error(e: &std::io::Error) -> Blocked {
    const OWN_TROUBLE: [i32; 4] = [24, 23, 105, 12];
    match e.raw_os_error() {
        Some(code) if OWN_TROUBLE.contains(&code) => Ok(Unobservable::Resources),
        _ => Err(ProbeFailure::Connect),
    }
}

async fn resolve(
    target: &ProbeTarget,
    own_addr: Option<IpAddr>,
    deadline: Instant,
) -> Result<SocketAddr, Blocked> {
    let host = match (&target.host, own_addr) {
        (None, Some(ip)) => return Ok(SocketAddr::new(ip, target.port)),
        (None, None) => return Err(Ok(Unobservable::NoAddress)),
        (Some(h), _) => h,
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, target.port));
    }
    tokio::time::timeout_at(
        deadline,
        tokio::net::lookup_host((host.as_str(), target.port)),
    )
    .await
    .map_err(|_| Ok(Unobservable::Resolve))?
    .map_err(|_| Ok(Unobservable::Resolve))?
    .next()
    .ok_or(Ok(Unobservable::Resolve))
}

async fn http(
    stream: TcpStream,
    addr: SocketAddr,
    target: &ProbeTarget,
    deadline: Instant,
    detail: &mut ProbeDetail,
) -> Result<(), ProbeFailure> {
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|_| ProbeFailure::Connect)?;
    // The connection is driven on its own task and dropped with the guard.
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let host = match &target.host {
        Some(h) => format!("{h}:{}", target.port),
        None => addr.to_string(),
    };
    let request = hyper::Request::get(target.path.as_str())
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| ProbeFailure::Status)?;
    let response = tokio::time::timeout_at(deadline, sender.send_request(request))
        .await
        .map_err(|_| ProbeFailure::Timeout)?
        .map_err(|_| ProbeFailure::Connect)?;
    let status = response.status();
    detail.http_status = Some(status.as_u16());
    let mut body = response.into_body();
    if !(status.is_success() || status.is_redirection()) {
        // The head of the body, as far as it arrives soon: evidence only, the failure is the
        // status either way, so a slow body never makes the probe slower than a moment.
        let soon = deadline.min(Instant::now() + EXCERPT_WAIT);
        let (head, more) = read_body(&mut body, BODY_EXCERPT_BYTES, soon)
            .await
            .unwrap_or_default();
        detail.body_excerpt = Some(excerpt(&head, more));
        return Err(ProbeFailure::Status);
    }
    let Some(expected) = &target.expect_body else {
        return Ok(());
    };
    let (seen, more) = read_body(&mut body, MAX_BODY, deadline).await?;
    if String::from_utf8_lossy(&seen).contains(expected.as_str()) {
        Ok(())
    } else {
        detail.body_excerpt = Some(excerpt(&seen, more));
        Err(ProbeFailure::Body)
    }
}

/// Reads the body until its end or about `max` bytes; true if it had more.
async fn read_body(
    body: &mut hyper::body::Incoming,
    max: usize,
    deadline: Instant,
) -> Result<(Vec<u8>, bool), ProbeFailure> {
    let mut seen = Vec::new();
    while seen.len() < max {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| ProbeFailure::Timeout)?;
        match frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    seen.extend_from_slice(data);
                }
            }
            Some(Err(_)) => return Err(ProbeFailure::Connect),
            None => return Ok((seen, false)),
        }
    }
    Ok((seen, true))
}

fn excerpt(body: &[u8], more: bool) -> String {
    let more = more || body.len() > BODY_EXCERPT_BYTES;
    let head = &body[..body.len().min(BODY_EXCERPT_BYTES)];
    crate::evidence::text_of(head, BODY_EXCERPT_BYTES, more)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Probes `target` every `interval` until `cancel` or until `report` returns false. Each
/// target runs on its own task, so a slow or hanging target never delays another; a probe
/// that outlasts the interval delays only its own next tick. `report` gets the outcome, the
/// probe's duration, the schedule lag (how late the probe started) and what the answer showed.
///
/// As kubelet's prober worker does after a kubelet restart: a schedule begun within one
/// interval of the [`Prober`] (a container the watchdog found running when it started) first
/// waits a random part of its interval, so that a hundred containers found at once are not
/// probed in step: a burst of connections in flight at once, whose buffers the allocator then
/// keeps. A container that starts later is probed at once.
pub async fn schedule(
    prober: Prober,
    target: ProbeTarget,
    interval: Duration,
    timeout: Duration,
    addr: tokio::sync::watch::Receiver<Option<IpAddr>>,
    cancel: tokio_util::sync::CancellationToken,
    mut report: impl FnMut(ProbeOutcome, Duration, Duration, ProbeDetail) -> bool,
) {
    if prober.started.elapsed() < interval {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval.mul_f64(random_fraction())) => {}
        }
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = tokio::select! {
            _ = cancel.cancelled() => return,
            due = ticker.tick() => due,
        };
        let lag = Instant::now().saturating_duration_since(due);
        let own = *addr.borrow();
        let (result, took, detail) = prober.probe_detailed(&target, own, timeout).await;
        if !report(result, took, lag, detail) {
            return;
        }
    }
}

/// A number in [0, 1) that differs from call to call: std's randomly keyed SipHash of
/// nothing (each `RandomState` gets new keys), so spreading probes needs no extra crate.
fn random_fraction() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server answering every connection with `response`, or never if `None`.
    async fn server(response: Option<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                match response {
                    Some(r) => {
                        let _ = sock.write_all(r.as_bytes()).await;
                    }
                    None => held.push(sock),
                }
            }
        });
        port
    }

    fn target(kind: ProbeKind, port: u16, expect: Option<&str>) -> ProbeTarget {
        ProbeTarget {
            kind,
            host: None,
            port,
            path: "/health".into(),
            expect_body: expect.map(Into::into),
        }
    }

    const LOCAL: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[tokio::test]
    async fn http_outcomes() {
        let p = Prober::new().unwrap();
        let t = Duration::from_millis(300);
        let ok = server(Some("HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nall ok\n")).await;
        assert_eq!(
            p.probe(&target(ProbeKind::Http, ok, None), LOCAL, t)
                .await
                .0,
            ProbeOutcome::Passed
        );
        assert_eq!(
            p.probe(&target(ProbeKind::Http, ok, Some("all ok")), LOCAL, t)
                .await
                .0,
            ProbeOutcome::Passed
        );
        assert_eq!(
            p.probe(&target(ProbeKind::Http, ok, Some("degraded")), LOCAL, t)
                .await
                .0,
            ProbeOutcome::Failed(ProbeFailure::Body)
        );
        let bad = server(Some(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        assert_eq!(
            p.probe(&target(ProbeKind::Http, bad, None), LOCAL, t)
                .await
                .0,
            ProbeOutcome::Failed(ProbeFailure::Status)
        );
        let hung = server(None).await;
        let (r, took) = p
            .probe(&target(ProbeKind::Http, hung, None), LOCAL, t)
            .await;
        assert_eq!(r, ProbeOutcome::Failed(ProbeFailure::Timeout));
        assert!(took < Duration::from_secs(2), "timeout honoured: {took:?}");
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            p.probe(&target(ProbeKind::Http, closed, None), LOCAL, t)
                .await
                .0,
            ProbeOutcome::Failed(ProbeFailure::Connect)
        );
        assert_eq!(
            p.probe(&target(ProbeKind::Http, ok, None), None, t).await.0,
            ProbeOutcome::Unobservable(Unobservable::NoAddress)
        );
    }

    /// A failed HTTP probe keeps its status and a bounded, UTF-8-safe excerpt of the body.
    #[tokio::test]
    async fn a_failed_http_probe_keeps_status_and_a_bounded_body_excerpt() {
        let p = Prober::new().unwrap();
        let t = Duration::from_millis(300);
        let bad = server(Some(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 21\r\n\r\nmaintenance until 3am",
        ))
        .await;
        let (r, _, d) = p
            .probe_detailed(&target(ProbeKind::Http, bad, None), LOCAL, t)
            .await;
        assert_eq!(r, ProbeOutcome::Failed(ProbeFailure::Status));
        assert_eq!(d.http_status, Some(503));
        assert_eq!(d.body_excerpt.as_deref(), Some("maintenance until 3am"));
        // 20 KB of two-byte characters: cut within the bound, on a character, marked.
        let big: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: 20000\r\n\r\n{}",
                "é".repeat(10_000)
            )
            .into_boxed_str(),
        );
        let ok = server(Some(big)).await;
        let (r, _, d) = p
            .probe_detailed(&target(ProbeKind::Http, ok, Some("ready")), LOCAL, t)
            .await;
        assert_eq!(r, ProbeOutcome::Failed(ProbeFailure::Body));
        assert_eq!(d.http_status, Some(200));
        let excerpt = d.body_excerpt.unwrap();
        assert!(excerpt.len() <= BODY_EXCERPT_BYTES, "{}", excerpt.len());
        assert!(
            excerpt.starts_with("éé") && excerpt.ends_with('…'),
            "{excerpt}"
        );
        assert!(!excerpt.contains('\u{fffd}'), "{excerpt}");
    }

    /// When each of `n` schedules begun now probes first, after `base`: a target without an
    /// address, so the probe is immediate and needs no network.
    async fn first_probes(prober: &Prober, n: usize, interval: Duration) -> Vec<Duration> {
        let base = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..n {
            let (prober, tx) = (prober.clone(), tx.clone());
            let (_addr, addr_rx) = tokio::sync::watch::channel(None);
            tokio::spawn(async move {
                let target = target(ProbeKind::Tcp, 80, None);
                let cancel = tokio_util::sync::CancellationToken::new();
                schedule(
                    prober,
                    target,
                    interval,
                    interval,
                    addr_rx,
                    cancel,
                    |_, _, _, _| {
                        let _ = tx.send(base.elapsed());
                        false
                    },
                )
                .await;
            });
        }
        drop(tx);
        let mut firsts = Vec::new();
        while let Some(first) = rx.recv().await {
            firsts.push(first);
        }
        firsts
    }

    /// Schedules begun with the prober (containers found at start) spread their first probe
    /// over one interval; one begun an interval later (a container started since) probes at
    /// once.
    #[tokio::test(start_paused = true)]
    async fn schedules_begun_at_start_spread_over_an_interval_later_ones_probe_at_once() {
        let interval = Duration::from_secs(1);
        let prober = Prober::new().unwrap();
        let firsts = first_probes(&prober, 50, interval).await;
        assert_eq!(firsts.len(), 50);
        assert!(firsts.iter().all(|f| *f < interval), "{firsts:?}");
        // 50 uniform draws fill at least 5 of the 10 tenths of the interval (all but certain).
        let tenths: std::collections::BTreeSet<u128> =
            firsts.iter().map(|f| f.as_millis() / 100).collect();
        assert!(tenths.len() >= 5, "not spread: {firsts:?}");
        tokio::time::advance(interval).await;
        assert_eq!(
            first_probes(&prober, 3, interval).await,
            vec![Duration::ZERO; 3]
        );
    }

    #[tokio::test]
    async fn tcp_outcomes() {
        let p = Prober::new().unwrap();
        let t = Duration::from_millis(300);
        let open = server(None).await;
        assert_eq!(
            p.probe(&target(ProbeKind::Tcp, open, None), LOCAL, t)
                .await
                .0,
            ProbeOutcome::Passed
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            p.probe(&target(ProbeKind::Tcp, closed, None), LOCAL, t)
                .await
                .0,
            ProbeOutcome::Failed(ProbeFailure::Connect)
        );
    }
}

//! The watchdog's own probes (layer 3): HTTP and TCP, each bounded by its timeout.

use selfheal_core::{ProbeFailure, ProbeKind, ProbeTarget};
use std::net::IpAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The largest body read when a probe looks for expected text.
const MAX_BODY: usize = 64 * 1024;

/// Runs probes. One client shared by all containers; connections are never reused, so each
/// probe sees the service as a new client would.
#[derive(Debug, Clone)]
pub struct Prober {
    client: reqwest::Client,
}

impl Prober {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("selfheal/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    /// Probes `target`; `own_addr` is the container's address for targets without a host.
    pub async fn probe(
        &self,
        target: &ProbeTarget,
        own_addr: Option<IpAddr>,
        timeout: Duration,
    ) -> (Result<(), ProbeFailure>, Duration) {
        let started = Instant::now();
        let host = match (&target.host, own_addr) {
            (Some(h), _) => h.clone(),
            (None, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => return (Err(ProbeFailure::Resolve), started.elapsed()),
        };
        let result = match target.kind {
            ProbeKind::Tcp => tcp(&host, target.port, timeout).await,
            ProbeKind::Http => self.http(&host, target, timeout).await,
        };
        (result, started.elapsed())
    }

    async fn http(
        &self,
        host: &str,
        target: &ProbeTarget,
        timeout: Duration,
    ) -> Result<(), ProbeFailure> {
        let url = format!("http://{host}:{}{}", target.port, target.path);
        let deadline = Instant::now() + timeout;
        let response = tokio::time::timeout_at(deadline, self.client.get(&url).send())
            .await
            .map_err(|_| ProbeFailure::Timeout)?
            .map_err(|e| classify(&e))?;
        let status = response.status();
        if !(status.is_success() || status.is_redirection()) {
            return Err(ProbeFailure::Status);
        }
        let Some(expected) = &target.expect_body else {
            return Ok(());
        };
        let mut response = response;
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| ProbeFailure::Timeout)?
                .map_err(|e| classify(&e))?;
            match chunk {
                Some(c) if body.len() < MAX_BODY => body.extend_from_slice(&c),
                _ => break,
            }
        }
        if String::from_utf8_lossy(&body).contains(expected.as_str()) {
            Ok(())
        } else {
            Err(ProbeFailure::Body)
        }
    }
}

/// Probes `target` every `interval` until `cancel` or until `report` returns false. Each
/// target runs on its own task, so a slow or hanging target never delays another; a probe
/// that outlasts the interval delays only its own next tick. `report` gets the outcome, the
/// probe's duration and the schedule lag (how late the probe started).
pub async fn schedule(
    prober: Prober,
    target: ProbeTarget,
    interval: Duration,
    timeout: Duration,
    addr: tokio::sync::watch::Receiver<Option<IpAddr>>,
    cancel: tokio_util::sync::CancellationToken,
    mut report: impl FnMut(Result<(), ProbeFailure>, Duration, Duration) -> bool,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = tokio::select! {
            _ = cancel.cancelled() => return,
            due = ticker.tick() => due,
        };
        let lag = Instant::now().saturating_duration_since(due);
        let own = *addr.borrow();
        let (result, took) = prober.probe(&target, own, timeout).await;
        if !report(result, took, lag) {
            return;
        }
    }
}

fn classify(e: &reqwest::Error) -> ProbeFailure {
    if e.is_timeout() {
        ProbeFailure::Timeout
    } else if e.is_connect() {
        ProbeFailure::Connect
    } else {
        ProbeFailure::Status
    }
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Result<(), ProbeFailure> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Err(_) => Err(ProbeFailure::Timeout),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(ProbeFailure::Resolve),
        Ok(Err(_)) => Err(ProbeFailure::Connect),
        Ok(Ok(_)) => Ok(()),
    }
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
            Ok(())
        );
        assert_eq!(
            p.probe(&target(ProbeKind::Http, ok, Some("all ok")), LOCAL, t)
                .await
                .0,
            Ok(())
        );
        assert_eq!(
            p.probe(&target(ProbeKind::Http, ok, Some("degraded")), LOCAL, t)
                .await
                .0,
            Err(ProbeFailure::Body)
        );
        let bad = server(Some(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        assert_eq!(
            p.probe(&target(ProbeKind::Http, bad, None), LOCAL, t)
                .await
                .0,
            Err(ProbeFailure::Status)
        );
        let hung = server(None).await;
        let (r, took) = p
            .probe(&target(ProbeKind::Http, hung, None), LOCAL, t)
            .await;
        assert_eq!(r, Err(ProbeFailure::Timeout));
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
            Err(ProbeFailure::Connect)
        );
        assert_eq!(
            p.probe(&target(ProbeKind::Http, ok, None), None, t).await.0,
            Err(ProbeFailure::Resolve)
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
            Ok(())
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
            Err(ProbeFailure::Connect)
        );
    }
}

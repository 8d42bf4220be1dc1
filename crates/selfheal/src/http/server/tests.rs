use super::*;
use crate::journal::{IncidentJournal, JournalMetrics};
use crate::shared::Shared;
use std::io::{Read, Write};

struct Server {
    addr: std::net::SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(limits: ConnectionLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = IncidentJournal::open(dir.path(), JournalMetrics::default()).unwrap();
    let shared = Shared::new(Arc::new(journal), false);
    shared.set_docker_up(true);
    shared.beat();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        crate::http::router(shared),
        limits,
        cancel.clone(),
    ));
    Server {
        addr,
        cancel,
        task,
        _dir: dir,
    }
}

/// One HTTP/1.0 GET on a blocking socket (off the runtime); the status code.
async fn get(addr: std::net::SocketAddr, path: &'static str) -> std::io::Result<u16> {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))
    })
    .await
    .unwrap()
}

/// Reads until the peer closes; true if it closed (EOF or reset) before `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// At the bound a newcomer is served and the longest idle connection is the one closed.
#[tokio::test]
async fn at_the_bound_the_longest_idle_connection_makes_room() {
    let limits = ConnectionLimits {
        max_connections: 4,
        ..ConnectionLimits::default()
    };
    let server = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
        // Accepted in this order, so the first is the longest idle.
        tokio::task::yield_now().await;
    }
    // Each newcomer closes the longest idle connection; a new idle one fills the bound again.
    for _ in 0..3 {
        assert_eq!(get(server.addr, "/healthz").await.unwrap(), 200);
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let mut closed = Vec::new();
    for s in &mut idle {
        closed.push(closed_within(s, Duration::from_millis(300)).await);
    }
    assert_eq!(closed, [true, true, true, false, false, false, false]);
    server.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("stops on cancel")
        .unwrap();
}

/// Idle connections and slow request heads are closed after their timeouts; the slots
/// come back.
#[tokio::test]
async fn idle_and_slow_connections_time_out() {
    let limits = ConnectionLimits {
        max_connections: 8,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
    };
    let server = start(limits).await;
    let started = Instant::now();
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET /healthz HT")
        .await
        .unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
    let slow_closed = started.elapsed();
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
    let idle_closed = started.elapsed();
    assert!(
        slow_closed >= Duration::from_millis(300) && slow_closed < idle_closed,
        "slow head closed after {slow_closed:?}, idle after {idle_closed:?}"
    );
    assert!(idle_closed >= Duration::from_millis(600), "{idle_closed:?}");
    assert_eq!(get(server.addr, "/healthz").await.unwrap(), 200);
    server.cancel.cancel();
    server.task.await.unwrap();
}

/// A connection serving a request is never evicted: the longest idle one is, and with
/// every slot serving, a newcomer is refused.
#[test]
fn a_serving_connection_is_not_evicted() {
    let slots = Slots::new(2);
    let Admission::Admitted(_, a) = slots.admit() else {
        panic!("a free slot")
    };
    let Admission::Admitted(_, b) = slots.admit() else {
        panic!("a free slot")
    };
    a.phase.send_replace(Phase::Serving);
    let Admission::Evicted(_, c) = slots.admit() else {
        panic!("b is idle and makes room")
    };
    assert!(b.evicted.is_cancelled() && !a.evicted.is_cancelled());
    assert_eq!(slots.len(), 2);
    c.phase.send_replace(Phase::Serving);
    assert!(matches!(slots.admit(), Admission::Refused));
    assert!(!a.evicted.is_cancelled() && !c.evicted.is_cancelled());
    assert_eq!(slots.len(), 2);
}

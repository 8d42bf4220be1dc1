//! `healthcheck URL`: exit 0 if an HTTP GET of `URL` answers 2xx within 2 s, else 1.
//!
//! Std only and a static-enough binary: it is copied into the Prometheus, Alertmanager and
//! node-exporter images, which have no shell or curl, as their Docker HEALTHCHECK.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(2);

/// `http://host[:port][/path]` split into its parts.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    path: String,
}

fn parse(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .map_err(|_| format!("{url:?}: bad port {port:?}"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok(Target {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

fn status(target: &Target) -> Result<u16, String> {
    let started = Instant::now();
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {}: {e}", target.host))?;
    let mut last = format!("{}: no address", target.host);
    for addr in addrs {
        let left = TIMEOUT.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return request(stream, target, left).map_err(|e| format!("{addr}: {e}")),
            Err(e) => last = format!("connect {addr}: {e}"),
        }
    }
    Err(last)
}

fn request(mut stream: TcpStream, target: &Target, timeout: Duration) -> std::io::Result<u16> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: a server that answers after the first segment must not see a half request.
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\n\r\n",
        target.path, target.host
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    match (words.next(), words.next().and_then(|c| c.parse().ok())) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => Ok(code),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no HTTP status line",
        )),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url] = args.as_slice() else {
        eprintln!("usage: healthcheck http://host:port/path");
        return ExitCode::from(2);
    };
    match parse(url).and_then(|target| status(&target)) {
        Ok(code) if (200..300).contains(&code) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("healthcheck: {url} answered {code}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("healthcheck: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn target(host: &str, port: u16, path: &str) -> Target {
        Target {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        }
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse("http://localhost:9090/-/healthy"),
            Ok(target("localhost", 9090, "/-/healthy"))
        );
        assert_eq!(parse("http://app"), Ok(target("app", 80, "/")));
        assert!(parse("https://x/").is_err());
        assert!(parse("http://x:port/").is_err());
        assert!(parse("http://:80/").is_err());
    }

    /// Serves one connection with `response` and returns the port.
    fn one_shot_server(response: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut seen = Vec::new();
                let mut buf = [0u8; 512];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let _ = conn.write_all(response.as_bytes());
            }
        });
        port
    }

    #[test]
    fn reads_the_status_code() {
        let ok = one_shot_server("HTTP/1.0 200 OK\r\n\r\nfine");
        assert_eq!(status(&target("127.0.0.1", ok, "/")), Ok(200));
        let down = one_shot_server("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(status(&target("127.0.0.1", down, "/")), Ok(503));
        let junk = one_shot_server("SSH-2.0-nope\r\n");
        assert!(status(&target("127.0.0.1", junk, "/")).is_err());
    }

    #[test]
    fn silence_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let started = Instant::now();
        // Accepted by the kernel's backlog, never answered.
        assert!(status(&target("127.0.0.1", port, "/")).is_err());
        assert!(started.elapsed() < TIMEOUT * 2);
        drop(listener);
    }
}

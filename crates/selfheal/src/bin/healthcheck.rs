//! `healthcheck URL`: exit 0 if an HTTP GET of `URL` answers 2xx within 2 s, else 1.
//!
//! Std only and a static-enough binary: it is copied into the offline Prometheus, Alertmanager
//! and node-exporter images, which have no shell or curl, as `/bin/wget`. It takes the subset of
//! busybox wget's arguments that compose.yaml's health checks use
//! (`wget -q -O /dev/null [-T SECONDS] URL`, and `--spider`), so one health check fits both
//! those images and the upstream ones (prom/prometheus and friends are busybox-based and run
//! busybox's own wget).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(2);

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    url: String,
    timeout: Duration,
}

/// `URL`, or busybox wget's `[-q] [-O /dev/null | --spider] [-T SECONDS] URL`. The body is
/// never kept, so an `-O` other than `/dev/null` is refused rather than silently ignored.
fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let mut url = None;
    let mut timeout = TIMEOUT;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-q" | "--quiet" | "--spider" => {}
            "-O" => match args.next().map(String::as_str) {
                Some("/dev/null") => {}
                other => {
                    return Err(format!(
                        "-O {}: only -O /dev/null is supported (the body is not kept)",
                        other.unwrap_or("(missing)")
                    ))
                }
            },
            "-T" => {
                let secs = args.next().ok_or("-T needs a number of seconds")?;
                let secs: u64 = secs
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("-T {secs}: expected whole seconds > 0"))?;
                timeout = Duration::from_secs(secs);
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ if url.is_some() => return Err(format!("more than one URL ({arg})")),
            _ => url = Some(arg.clone()),
        }
    }
    let url = url.ok_or("no URL")?;
    Ok(Invocation { url, timeout })
}

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

fn status(target: &Target, timeout: Duration) -> Result<u16, String> {
    let started = Instant::now();
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {}: {e}", target.host))?;
    let mut last = format!("{}: no address", target.host);
    for addr in addrs {
        let left = timeout.saturating_sub(started.elapsed());
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
    let Invocation { url, timeout } = match parse_args(&args) {
        Ok(invocation) => invocation,
        Err(e) => {
            eprintln!("healthcheck: {e}\nusage: wget [-q] [-O /dev/null] [-T SECONDS] http://host:port/path");
            return ExitCode::from(2);
        }
    };
    match parse(&url).and_then(|target| status(&target, timeout)) {
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

    fn args(line: &str) -> Result<Invocation, String> {
        parse_args(
            &line
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn takes_the_wget_arguments_compose_uses() {
        let url = "http://127.0.0.1:9090/-/ready".to_string();
        let plain = Invocation {
            url: url.clone(),
            timeout: TIMEOUT,
        };
        assert_eq!(args(&url), Ok(plain));
        let wget = args("-q -O /dev/null -T 5 http://127.0.0.1:9090/-/ready").unwrap();
        assert_eq!(
            (wget.url.as_str(), wget.timeout),
            (url.as_str(), Duration::from_secs(5))
        );
        assert!(args("--spider -q http://x/").is_ok());
        // A file it would not write, a missing URL, two URLs, an unknown flag: refused.
        assert!(args("-O /tmp/body http://x/")
            .unwrap_err()
            .contains("/dev/null"));
        assert!(args("-q -O /dev/null").is_err());
        assert!(args("http://x/ http://y/").is_err());
        assert!(args("--post-data=x http://x/").is_err());
        assert!(args("-T 0 http://x/").is_err());
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
        assert_eq!(status(&target("127.0.0.1", ok, "/"), TIMEOUT), Ok(200));
        let down = one_shot_server("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(status(&target("127.0.0.1", down, "/"), TIMEOUT), Ok(503));
        let junk = one_shot_server("SSH-2.0-nope\r\n");
        assert!(status(&target("127.0.0.1", junk, "/"), TIMEOUT).is_err());
    }

    #[test]
    fn silence_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let started = Instant::now();
        // Accepted by the kernel's backlog, never answered.
        assert!(status(&target("127.0.0.1", port, "/"), TIMEOUT).is_err());
        assert!(started.elapsed() < TIMEOUT * 2);
        drop(listener);
    }
}

//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: requests on its fd 3, answers and events on its fd 4, each
//! message JSON ended by a NUL byte). No WebSocket and no crate: a shell gives Chromium our
//! stdin as fd 3 and our stdout as fd 4.
#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one DevTools command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub fn chromium_path() -> Option<String> {
    ["chromium", "chromium-browser"].into_iter().find_map(|c| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    })
}

pub fn require_chromium() -> String {
    chromium_path().expect(
        "chromium is missing: install it with `bash .ci/prerequisites.sh test` \
         (Debian package chromium)",
    )
}

pub struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: mpsc::Receiver<Value>,
    next_id: u64,
    /// Every event received so far, in order.
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn launch() -> Self {
        let chromium = require_chromium();
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(profile.path().join("chromium.log")).expect("log");
        let mut child = Command::new("sh")
            .args([
                "-c",
                r#"exec "$@" 3<&0 4>&1 </dev/null >/dev/null"#,
                "sh",
                &chromium,
                "--headless",
                "--remote-debugging-pipe",
                // Tests run as root in CI, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                // Talk to nothing but the pages it is sent to (loopback).
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("chromium starts");
        let to_browser = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice(&buf) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                buf.clear();
            }
        });
        Self {
            child,
            to_browser,
            from_browser: rx,
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        }
    }

    /// One DevTools command (to a page's session, or to the browser); its result.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .and_then(|()| self.to_browser.flush())
            .unwrap_or_else(|e| panic!("{method}: chromium's pipe: {e}"));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("{method}: no answer from chromium: {e}"));
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Takes the events that arrived until now without a command.
    fn drain(&mut self) {
        while let Ok(v) = self.from_browser.try_recv() {
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Waits (at most `timeout`) for an event of `method` on `session`; returns it.
    pub fn wait_event(&mut self, session: &str, method: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut seen = self.events.len();
        loop {
            self.drain();
            if let Some(e) = self.events[seen..]
                .iter()
                .find(|e| e["method"] == method && e["sessionId"] == session)
            {
                return e.clone();
            }
            seen = self.events.len();
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {method} within {timeout:?}");
            if let Ok(v) = self.from_browser.recv_timeout(left) {
                if v.get("method").is_some() {
                    self.events.push(v);
                }
            }
        }
    }

    /// A new tab with the page, runtime, log and network domains on, `width` x `height`.
    pub fn page(&mut self, width: u32, height: u32) -> String {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            ["targetId"]
            .clone();
        let session = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        )["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(Some(&session), &format!("{domain}.enable"), json!({}));
        }
        self.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        session
    }

    /// Navigates and waits for the load event; the time from the command to the event.
    pub fn navigate(&mut self, session: &str, url: &str) -> Duration {
        self.drain();
        let from = self.events.len();
        let started = Instant::now();
        let r = self.call(Some(session), "Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
        // The event may already have come in while the command was answered.
        let loaded = self.events[from..]
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired" && e["sessionId"] == session);
        if !loaded {
            self.wait_event(session, "Page.loadEventFired", CALL_TIMEOUT);
        }
        started.elapsed()
    }

    /// Evaluates `expr` in the page (promises awaited); its value.
    pub fn eval(&mut self, session: &str, expr: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` every 100 ms until it is truthy or `timeout` passes.
    pub fn wait_until(
        &mut self,
        session: &str,
        expr: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(session, expr);
            if !(v.is_null() || v == false || v == 0 || v == "") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("timed out after {timeout:?} waiting for {expr}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The page's document as HTML (read through the DOM domain: works with scripts off).
    pub fn dom(&mut self, session: &str) -> String {
        let root = self.call(Some(session), "DOM.getDocument", json!({ "depth": -1 }));
        let html = self.call(
            Some(session),
            "DOM.getOuterHTML",
            json!({ "nodeId": root["root"]["nodeId"] }),
        );
        html["outerHTML"].as_str().unwrap_or_default().to_string()
    }

    /// Errors the page reported: uncaught exceptions, `console.error`, and the browser's own
    /// error log entries (a CSP violation, a failed load).
    pub fn errors(&mut self, session: &str) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter(|e| e["sessionId"] == session)
            .filter_map(|e| match e["method"].as_str()? {
                "Runtime.exceptionThrown" => Some(e["params"]["exceptionDetails"].to_string()),
                "Runtime.consoleAPICalled" if e["params"]["type"] == "error" => {
                    Some(e["params"]["args"].to_string())
                }
                "Log.entryAdded" if e["params"]["entry"]["level"] == "error" => {
                    Some(e["params"]["entry"].to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// Events of `method` on `session` so far.
    pub fn events_of(&mut self, session: &str, method: &str) -> Vec<Value> {
        self.drain();
        self.events
            .iter()
            .filter(|e| e["sessionId"] == session && e["method"] == method)
            .cloned()
            .collect()
    }

    /// The response headers of the page's main document at `url` (names in lower case).
    pub fn document_headers(&mut self, session: &str, url: &str) -> Value {
        self.events_of(session, "Network.responseReceived")
            .into_iter()
            .rev()
            .find(|e| e["params"]["type"] == "Document" && e["params"]["response"]["url"] == url)
            .map(|e| {
                let h = e["params"]["response"]["headers"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                Value::Object(h.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect())
            })
            .unwrap_or_else(|| panic!("no document response for {url}"))
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self, session: &str, path: &std::path::Path) {
        let r = self.call(
            Some(session),
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("data"))
            .expect("base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

impl Drop for Browser {
    /// Asks Chromium to close (it then ends its renderer and helper processes), and kills it
    /// if it has not within five seconds.
    fn drop(&mut self) {
        let _ = self
            .to_browser
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0")
            .and_then(|()| self.to_browser.flush());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

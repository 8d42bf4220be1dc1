//! One notification and how each kind of target wants it: the generic JSON, Slack's `text`,
//! Discord's `content` and `embeds`, ntfy's headers, Gotify's message, an email.

use selfheal_core::{Action, Severity, Trigger, VerbKind};
use serde::{Serialize, Serializer};
use serde_json::json;
use std::time::Duration;

/// Placeholder when the engine's name is not known yet and none was configured.
pub const UNKNOWN_HOST: &str = "(unknown host)";

/// What a message is about: an incident's trigger, or `selfheal notify test`. Serialized as
/// the trigger's name (`unhealthy`, `died`, ...) or `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyTrigger {
    Incident(Trigger),
    Test,
}

impl NotifyTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incident(t) => t.as_str(),
            Self::Test => "test",
        }
    }
}

impl std::fmt::Display for NotifyTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NotifyTrigger {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What the watchdog did or saw: the message's `event`, and its `outcome` in words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NotifyOutcome {
    /// An incident opened; the watchdog acts on the container as its `selfheal.action` says
    /// (`dry_run`: it only says so).
    Restarting {
        incident: u64,
        dry_run: bool,
        action: Action,
    },
    /// A restart failed; it is tried again after the backoff.
    RestartFailed { dry_run: bool },
    /// The restart budget is spent after `attempts` restarts and recreates; `stopped`: the
    /// container is stopped (`selfheal.on-quarantine=stop`).
    Quarantined { attempts: u32, stopped: bool },
    /// Healthy again for good: from the loop's first failure, over `faults` incidents.
    Recovered {
        time_to_recover: Duration,
        faults: u32,
    },
    /// `selfheal notify test`.
    Test,
}

impl NotifyOutcome {
    /// The `event` field: opened, failed, quarantined, recovered or test.
    pub fn event(self) -> &'static str {
        match self {
            Self::Restarting { .. } => "opened",
            Self::RestartFailed { .. } => "failed",
            Self::Quarantined { .. } => "quarantined",
            Self::Recovered { .. } => "recovered",
            Self::Test => "test",
        }
    }

    /// The title's word for it.
    fn headline(self) -> &'static str {
        match self {
            Self::Restarting { .. } => "failing",
            Self::RestartFailed { .. } => "restart failed",
            Self::Quarantined { .. } => "quarantined",
            Self::Recovered { .. } => "recovered",
            Self::Test => "test message",
        }
    }
}

/// The `outcome` field: what the watchdog did or saw, in words.
impl std::fmt::Display for NotifyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dry = |d: bool| if d { " (dry run)" } else { "" };
        match *self {
            Self::Restarting {
                incident,
                dry_run,
                action,
            } => {
                let doing = match action {
                    Action::Restart => "restarting",
                    Action::Recreate => "recreating",
                    Action::Notify | Action::None => "not touched (selfheal.action=notify)",
                };
                write!(f, "{doing}{}; incident #{incident} opened", dry(dry_run))
            }
            Self::RestartFailed { dry_run } => write!(
                f,
                "restart failed{}; it will be tried again after the backoff",
                dry(dry_run)
            ),
            Self::Quarantined { attempts, stopped } => write!(
                f,
                "quarantined after {attempts} restart(s): the restart budget is spent{}, it \
                 needs a human",
                if stopped {
                    ", stopped (selfheal.on-quarantine=stop)"
                } else {
                    ""
                }
            ),
            Self::Recovered {
                time_to_recover, ..
            } => write!(
                f,
                "recovered in {:.1}s and healthy since",
                time_to_recover.as_secs_f64()
            ),
            Self::Test => {
                f.write_str("test message from `selfheal notify test`; no container was touched")
            }
        }
    }
}

/// One notification. Every message names the host, the container with its compose project
/// and service, the trigger and the outcome.
#[derive(Debug, Clone)]
pub struct Notification {
    pub severity: Severity,
    /// The engine's `Name` (`GET /info`) or `--host-name`; filled in by the notifier.
    pub host: String,
    pub container: String,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    pub trigger: NotifyTrigger,
    pub outcome: NotifyOutcome,
    pub incident_id: u64,
    pub attempts: u32,
    /// What the watchdog did, in order (restart, recreate, ...): the incident's steps.
    pub steps: Vec<VerbKind>,
    /// A short form of the incident's evidence (last health check output, log lines), when
    /// there is some.
    pub evidence: Option<String>,
}

/// The JSON webhook's fields, in their order; `event`, `faults` and `time_to_recover_seconds`
/// come from the outcome.
#[derive(Serialize)]
struct Wire<'a> {
    event: &'static str,
    severity: Severity,
    host: &'a str,
    container: &'a str,
    compose_project: &'a Option<String>,
    compose_service: &'a Option<String>,
    trigger: NotifyTrigger,
    outcome: String,
    incident_id: u64,
    attempts: u32,
    #[serde(skip_serializing_if = "<[VerbKind]>::is_empty")]
    steps: &'a [VerbKind],
    /// Faults (incidents) of the crash loop this message closes; 1 without a loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    faults: Option<u32>,
    /// A recovery: from the loop's first failure to healthy again for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_recover_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: &'a Option<String>,
}

impl Serialize for Notification {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (faults, ttr) = match self.outcome {
            NotifyOutcome::Recovered {
                time_to_recover,
                faults,
            } => (Some(faults), Some(time_to_recover.as_secs_f64())),
            _ => (None, None),
        };
        Wire {
            event: self.outcome.event(),
            severity: self.severity,
            host: &self.host,
            container: &self.container,
            compose_project: &self.compose_project,
            compose_service: &self.compose_service,
            trigger: self.trigger,
            outcome: self.outcome.to_string(),
            incident_id: self.incident_id,
            attempts: self.attempts,
            steps: &self.steps,
            faults,
            time_to_recover_seconds: ttr,
            evidence: &self.evidence,
        }
        .serialize(s)
    }
}

impl Notification {
    /// The container with its compose project and service, when it has them.
    pub fn who(&self) -> String {
        match (&self.compose_project, &self.compose_service) {
            (Some(p), Some(s)) => format!("{} (compose {p}/{s})", self.container),
            (Some(p), None) => format!("{} (compose {p})", self.container),
            _ => self.container.clone(),
        }
    }

    /// One line: `[host] container: outcome`.
    pub fn title(&self) -> String {
        format!(
            "[{}] {}: {}",
            self.host,
            self.container,
            self.outcome.headline()
        )
    }

    /// The lines of the message, each `field: value`.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let mut l = vec![
            ("host", self.host.clone()),
            ("container", self.who()),
            ("trigger", self.trigger.to_string()),
            ("outcome", self.outcome.to_string()),
        ];
        if let NotifyOutcome::Recovered {
            time_to_recover,
            faults,
        } = self.outcome
        {
            let loop_note = if faults > 1 {
                format!(" ({faults} faults in a loop)")
            } else {
                String::new()
            };
            l.push((
                "time to recover",
                format!("{:.1}s{loop_note}", time_to_recover.as_secs_f64()),
            ));
        }
        if self.incident_id > 0 {
            l.push((
                "incident",
                format!("#{} ({} restart(s))", self.incident_id, self.attempts),
            ));
        }
        if !self.steps.is_empty() {
            let steps: Vec<&str> = self.steps.iter().map(|v| v.as_str()).collect();
            l.push(("steps", steps.join(", ")));
        }
        l.push(("severity", self.severity.as_str().into()));
        if let Some(e) = &self.evidence {
            l.push(("evidence", e.clone()));
        }
        l
    }

    /// The whole message as plain text.
    pub fn body(&self) -> String {
        self.lines()
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// One line for chat: `selfheal [host] container (compose p/s): outcome; trigger t`.
    pub fn text(&self) -> String {
        let mut t = format!(
            "selfheal [{}] {}: {}; trigger {}",
            self.host,
            self.who(),
            self.outcome,
            self.trigger
        );
        if self.incident_id > 0 {
            t.push_str(&format!("; incident #{}", self.incident_id));
        }
        if let Some(e) = &self.evidence {
            t.push_str(&format!("\nevidence: {e}"));
        }
        t
    }

    /// The generic JSON webhook: every field, plus `text` (so Slack-style receivers show it)
    /// and `title`.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        if let Some(o) = v.as_object_mut() {
            o.insert("text".into(), self.text().into());
            o.insert("title".into(), self.title().into());
        }
        v
    }

    /// Slack and Mattermost incoming webhooks: `text` is the message (both accept it).
    pub fn slack(&self) -> serde_json::Value {
        json!({ "text": format!("*{}*\n{}", self.title(), self.body()) })
    }

    /// Discord's execute-webhook body: a short `content` and one embed, inside Discord's
    /// limits (content 2000, title 256, description 4096, field value 1024 characters).
    pub fn discord(&self) -> serde_json::Value {
        let color = match self.severity {
            Severity::Info => 0x2EB67D,
            Severity::Warning => 0xECB22E,
            Severity::Critical => 0xE01E5A,
        };
        let fields: Vec<_> = self
            .lines()
            .into_iter()
            .map(|(k, v)| json!({ "name": k, "value": clip(&v, 1024), "inline": k != "evidence" }))
            .collect();
        json!({
            "content": clip(&self.text(), 2000),
            "embeds": [{
                "title": clip(&self.title(), 256),
                "description": clip(&self.outcome.to_string(), 4096),
                "color": color,
                "fields": fields,
            }],
        })
    }

    /// ntfy's priority (1 min .. 5 max) and tags (emoji short codes).
    pub fn ntfy_priority_and_tags(&self) -> (u8, &'static str) {
        match self.severity {
            Severity::Info => (3, "white_check_mark,selfheal"),
            Severity::Warning => (4, "warning,selfheal"),
            Severity::Critical => (5, "rotating_light,selfheal"),
        }
    }

    /// Gotify's `POST /message` body; priority 0..10 (Gotify's clients alert from 4, and
    /// loudly from 8).
    pub fn gotify(&self) -> serde_json::Value {
        let priority = match self.severity {
            Severity::Info => 4,
            Severity::Warning => 6,
            Severity::Critical => 9,
        };
        json!({ "title": self.title(), "message": self.body(), "priority": priority })
    }

    /// Telegram's `sendMessage` body for one chat: the title in bold and the lines, as HTML
    /// (only `&`, `<` and `>` need escaping). Cut before escaping, so no entity is cut in
    /// half; 3000 characters leave room for the escapes within Telegram's 4096.
    pub fn telegram(&self, chat: &str) -> serde_json::Value {
        let html = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let text = format!(
            "<b>{}</b>\n{}",
            html(&clip(&self.title(), 256)),
            html(&clip(&self.body(), 3000))
        );
        json!({ "chat_id": chat, "text": text, "parse_mode": "HTML" })
    }

    /// Pushover's `messages.json` form: message (1024 characters at most), title (250),
    /// priority -1 (quiet, info), 0 (warning) or 1 (critical, past quiet hours).
    pub fn pushover_form(&self, token: &str, user: &str, devices: Option<&str>) -> String {
        let priority = match self.severity {
            Severity::Info => "-1",
            Severity::Warning => "0",
            Severity::Critical => "1",
        };
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token)
            .append_pair("user", user)
            .append_pair("message", &clip(&self.body(), 1024))
            .append_pair("title", &clip(&self.title(), 250))
            .append_pair("priority", priority);
        if let Some(d) = devices {
            form.append_pair("device", d);
        }
        form.finish()
    }
}

/// At most `n` characters, with an ellipsis when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests;

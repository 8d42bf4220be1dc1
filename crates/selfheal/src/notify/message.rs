//! One notification and how each kind of target wants it: the generic JSON, Slack's `text`,
//! Discord's `content` and `embeds`, ntfy's headers, Gotify's message, an email.

use selfheal_core::Severity;
use serde::Serialize;
use serde_json::json;

/// Placeholder when the engine's name is not known yet and none was configured.
pub const UNKNOWN_HOST: &str = "(unknown host)";

/// One notification. Every message names the host, the container with its compose project
/// and service, the trigger and the outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// opened, failed, quarantined, recovered or test.
    pub event: &'static str,
    pub severity: Severity,
    /// The engine's `Name` (`GET /info`) or `--host-name`; filled in by the notifier.
    pub host: String,
    pub container: String,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    pub trigger: String,
    /// What the watchdog did or saw, in words: "restarting", "restart failed", ...
    pub outcome: String,
    pub incident_id: u64,
    pub attempts: u32,
    /// Faults (incidents) of the crash loop this message closes; 1 without a loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<u32>,
    /// A recovery: from the loop's first failure to healthy again for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_recover_seconds: Option<f64>,
    /// A short form of the incident's evidence (last health check output, log lines), when
    /// there is some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
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
        let what = match self.event {
            "opened" => "failing",
            "failed" => "restart failed",
            "quarantined" => "quarantined",
            "recovered" => "recovered",
            "test" => "test message",
            other => other,
        };
        format!("[{}] {}: {what}", self.host, self.container)
    }

    /// The lines of the message, each `field: value`.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let mut l = vec![
            ("host", self.host.clone()),
            ("container", self.who()),
            ("trigger", self.trigger.clone()),
            ("outcome", self.outcome.clone()),
        ];
        if let Some(t) = self.time_to_recover_seconds {
            let loop_note = match self.faults {
                Some(n) if n > 1 => format!(" ({n} faults in a loop)"),
                _ => String::new(),
            };
            l.push(("time to recover", format!("{t:.1}s{loop_note}")));
        }
        if self.incident_id > 0 {
            l.push((
                "incident",
                format!("#{} ({} restart(s))", self.incident_id, self.attempts),
            ));
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
                "description": clip(&self.outcome, 4096),
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
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification {
            event: "recovered",
            severity: Severity::Info,
            host: "node-7".into(),
            container: "shop-web-1".into(),
            compose_project: Some("shop".into()),
            compose_service: Some("web".into()),
            trigger: "unhealthy".into(),
            outcome: "recovered".into(),
            incident_id: 12,
            attempts: 3,
            faults: Some(3),
            time_to_recover_seconds: Some(41.25),
            evidence: None,
        }
    }

    #[test]
    fn every_rendering_names_host_container_compose_trigger_outcome() {
        let n = sample();
        for text in [
            n.text(),
            n.body(),
            n.slack()["text"].to_string(),
            n.discord().to_string(),
            n.gotify()["message"].to_string(),
        ] {
            for want in ["node-7", "shop-web-1", "shop/web", "unhealthy", "recovered"] {
                assert!(text.contains(want), "{want} missing in {text}");
            }
        }
        assert!(n
            .body()
            .contains("time to recover: 41.2s (3 faults in a loop)"));
        assert!(
            !n.body().contains("evidence"),
            "no evidence line without evidence"
        );
        let with = Notification {
            evidence: Some("health check: exit 1: connection refused".into()),
            ..sample()
        };
        assert!(with.body().contains("evidence: health check: exit 1"));
        assert_eq!(
            with.json()["evidence"],
            "health check: exit 1: connection refused"
        );
    }

    #[test]
    fn discord_stays_inside_its_limits() {
        let n = Notification {
            container: "x".repeat(3000),
            evidence: Some("y".repeat(5000)),
            ..sample()
        };
        let d = n.discord();
        assert!(d["content"].as_str().unwrap().chars().count() <= 2000);
        assert!(d["embeds"][0]["title"].as_str().unwrap().chars().count() <= 256);
        for f in d["embeds"][0]["fields"].as_array().unwrap() {
            assert!(f["value"].as_str().unwrap().chars().count() <= 1024);
        }
    }
}

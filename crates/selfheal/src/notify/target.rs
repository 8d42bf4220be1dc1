//! Notification targets, given as URLs whose scheme names the kind: `json+https://…`,
//! `slack+https://…`, `discord+https://…`, `ntfy+https://host/topic`,
//! `gotify+https://host/?token=…`, `telegram+https://api.telegram.org/?token=…&chats=…`,
//! `pushover+https://api.pushover.net/?token=…&user=…`, `smtp://user:pass@host:587?from=…&to=…`.
//! The base URL of the Telegram and Pushover kinds is theirs to change (a proxy, a test).
//!
//! Shoutrrr's URLs (what Watchtower and Docker-Guardian users already have) are accepted for
//! every kind selfheal speaks and turned into the forms above: `telegram://TOKEN@telegram?chats=…`,
//! `pushover://shoutrrr:TOKEN@USER/?devices=…`, `discord://TOKEN@ID`,
//! `gotify://host[:port][/path]/TOKEN`, `ntfy://[user:pass@][host]/TOPIC`,
//! `slack://[botname@]A/B/C` (a Slack webhook's three tokens).
//!
//! The fragment carries the watchdog's own options and is never sent anywhere:
//! `#name=ops&severity=warning`. A target is shown (log, metrics, API, `notify test`) only by
//! its name and a redacted address: scheme, host and port, never user, password, path or query
//! (Slack and Discord webhook URLs carry their secret in the path).

use reqwest::Url;
use selfheal_core::Severity;
use std::path::PathBuf;

/// What a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The generic JSON webhook (`--webhook-url`), a superset of Slack's `text`.
    Json,
    /// Slack and Mattermost incoming webhooks.
    Slack,
    Discord,
    Ntfy,
    Gotify,
    /// Telegram's Bot API `sendMessage`, once per chat.
    Telegram,
    /// Pushover's `messages.json`.
    Pushover,
    Smtp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Slack => "slack",
            Kind::Discord => "discord",
            Kind::Ntfy => "ntfy",
            Kind::Gotify => "gotify",
            Kind::Telegram => "telegram",
            Kind::Pushover => "pushover",
            Kind::Smtp => "smtp",
        }
    }
}

/// Email over SMTP, always with STARTTLS.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
    /// A PEM file of a CA to trust besides the public roots (a private mail relay).
    pub ca_file: Option<PathBuf>,
}

/// Where a target is reached.
#[derive(Clone)]
pub enum Endpoint {
    /// The URL to POST to, without the kind prefix and the fragment. For Gotify, the token is
    /// taken out of the query and sent as a header.
    Http {
        url: Url,
        token: Option<String>,
    },
    /// The Bot API's base URL (`https://api.telegram.org`), the bot's token and the chats.
    Telegram {
        base: Url,
        token: String,
        chats: Vec<String>,
    },
    /// `messages.json`'s URL, the application's token, the user (or group) key and, if
    /// given, the devices (comma-separated).
    Pushover {
        url: Url,
        token: String,
        user: String,
        devices: Option<String>,
    },
    Smtp(SmtpTarget),
}

/// One configured target.
#[derive(Clone)]
pub struct Target {
    pub kind: Kind,
    /// The configured `name=`, else `KIND-INDEX` (index in the configured list, from 0).
    pub name: String,
    pub min_severity: Severity,
    pub endpoint: Endpoint,
    /// Scheme, host and port only: safe to show.
    pub redacted: String,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Http { url, .. } | Endpoint::Pushover { url, .. } => {
                write!(f, "Http({})", url.host_str().unwrap_or(""))
            }
            Endpoint::Telegram { base, chats, .. } => write!(
                f,
                "Telegram({}, {} chat(s))",
                base.host_str().unwrap_or(""),
                chats.len()
            ),
            Endpoint::Smtp(s) => s.fmt(f),
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it holds secrets.
        f.debug_struct("Target")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("min_severity", &self.min_severity)
            .field("address", &self.redacted)
            .finish()
    }
}

/// A target URL that cannot be used. The value is shown redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notify target {index} ({shown}): {reason}")]
pub struct TargetError {
    pub index: usize,
    pub shown: String,
    pub reason: String,
}

/// `kind+scheme://host:port/…` with everything after the authority left out.
fn redact(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => return "<not a URL>".into(),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let tail = if end < rest.len() { "/…" } else { "" };
    format!("{scheme}{host}{tail}")
}

/// Parses target `index` of the configured list.
pub fn parse(raw: &str, index: usize) -> Result<Target, TargetError> {
    let shown = redact(raw.trim());
    let err = |reason: String| TargetError {
        index,
        shown: shown.clone(),
        reason,
    };
    let converted = super::shoutrrr::from_shoutrrr(raw.trim()).map_err(err)?;
    let raw = converted.as_deref().unwrap_or(raw.trim());
    let (scheme, _) = raw
        .split_once("://")
        .ok_or_else(|| err("expected KIND+https://… or smtp://…".into()))?;
    let (kind, inner_scheme) = match scheme.split_once('+') {
        Some((k, s)) => (k, s),
        None if scheme == "smtp" => ("smtp", "smtp"),
        None if matches!(scheme, "http" | "https") => ("json", scheme),
        None => return Err(err(format!("unknown kind {scheme:?}"))),
    };
    let kind = match kind {
        "json" => Kind::Json,
        "slack" | "mattermost" => Kind::Slack,
        "discord" => Kind::Discord,
        "ntfy" => Kind::Ntfy,
        "gotify" => Kind::Gotify,
        "telegram" => Kind::Telegram,
        "pushover" => Kind::Pushover,
        "smtp" => Kind::Smtp,
        other => {
            return Err(err(format!(
                "unknown kind {other:?}: expected json, slack, discord, ntfy, gotify, telegram, \
                 pushover or smtp"
            )))
        }
    };
    let url = Url::parse(&format!("{inner_scheme}://{}", &raw[scheme.len() + 3..]))
        .map_err(|e| err(format!("not a URL: {e}")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("the URL needs a host".into()));
    }
    let mut name = format!("{}-{index}", kind.as_str());
    let mut min_severity = Severity::Info;
    for (k, v) in url::form_urlencoded::parse(url.fragment().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "name" if valid_name(&v) => name = v.into_owned(),
            "name" => {
                return Err(err(format!(
                    "name {v:?}: use letters, digits, '-', '_' or '.' (at most 64)"
                )))
            }
            "severity" => {
                min_severity = Severity::parse(&v).ok_or_else(|| {
                    err(format!(
                        "severity {v:?}: expected info, warning or critical"
                    ))
                })?
            }
            other => {
                return Err(err(format!(
                    "unknown option {other:?} after '#': expected name= or severity="
                )))
            }
        }
    }
    let mut url = url;
    url.set_fragment(None);
    let endpoint = match kind {
        Kind::Smtp => Endpoint::Smtp(smtp(&url).map_err(err)?),
        _ => {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(err(format!(
                    "{}+ needs http:// or https:// after it",
                    kind.as_str()
                )));
            }
            let token = match kind {
                Kind::Gotify => Some(take_query(&mut url, "token").ok_or_else(|| {
                    err("gotify needs the application token: gotify+https://host/?token=…".into())
                })?),
                _ => None,
            };
            if kind == Kind::Ntfy && url.path().trim_matches('/').is_empty() {
                return Err(err("ntfy needs a topic: ntfy+https://host/TOPIC".into()));
            }
            match kind {
                Kind::Telegram => telegram(url).map_err(err)?,
                Kind::Pushover => pushover(url).map_err(err)?,
                _ => Endpoint::Http { url, token },
            }
        }
    };
    Ok(Target {
        kind,
        name,
        min_severity,
        endpoint,
        redacted: if scheme.contains('+') || kind == Kind::Smtp || converted.is_some() {
            shown
        } else {
            format!("json+{shown}")
        },
    })
}

/// `telegram+https://api.telegram.org/?token=…&chats=…`: the path and the rest of the query
/// are the base URL's.
fn telegram(mut url: Url) -> Result<Endpoint, String> {
    let token = take_query(&mut url, "token").ok_or(
        "telegram needs the bot's token: telegram+https://api.telegram.org/?token=…&chats=…",
    )?;
    let chats: Vec<String> = take_query(&mut url, "chats")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    if chats.is_empty() {
        return Err("telegram needs at least one chat: &chats=CHAT_ID or @channel".into());
    }
    Ok(Endpoint::Telegram {
        base: url,
        token,
        chats,
    })
}

/// `pushover+https://api.pushover.net/?token=…&user=…[&devices=…]`: posts to
/// `BASE/1/messages.json`.
fn pushover(mut url: Url) -> Result<Endpoint, String> {
    let token = take_query(&mut url, "token").ok_or(
        "pushover needs the application's token: pushover+https://api.pushover.net/?token=…&user=…",
    )?;
    let user =
        take_query(&mut url, "user").ok_or("pushover needs the user or group key: &user=…")?;
    let devices = take_query(&mut url, "devices");
    let path = format!("{}/1/messages.json", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(Endpoint::Pushover {
        url,
        token,
        user,
        devices,
    })
}

fn valid_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Removes `key` from the query and returns its value.
fn take_query(url: &mut Url, key: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let value = pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty());
    let rest: Vec<_> = pairs.iter().filter(|(k, _)| k != key).collect();
    if rest.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(rest);
    }
    value
}

fn smtp(url: &Url) -> Result<SmtpTarget, String> {
    if url.scheme() != "smtp" {
        return Err("email targets are smtp://user:pass@host:587?from=…&to=…".into());
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let credentials = (!url.username().is_empty())
        .then(|| (decode(url.username()), decode(url.password().unwrap_or(""))));
    let mut from = None;
    let mut to = Vec::new();
    let mut ca_file = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "from" => from = Some(v.into_owned()),
            "to" => to.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "ca-file" | "ca_file" => ca_file = Some(PathBuf::from(v.as_ref())),
            other => {
                return Err(format!(
                    "unknown smtp option {other:?}: expected from=, to= or ca-file="
                ))
            }
        }
    }
    let from = from.ok_or("smtp needs a sender: ?from=watchdog@example.com")?;
    let check = |a: &str| {
        a.parse::<lettre::Address>()
            .map(|_| ())
            .map_err(|e| format!("{a:?} is not an email address: {e}"))
    };
    check(&from)?;
    if to.is_empty() {
        return Err("smtp needs at least one recipient: &to=ops@example.com".into());
    }
    for a in &to {
        check(a)?;
    }
    if let Some(ca) = &ca_file {
        if !ca.is_file() {
            return Err(format!("ca-file {} is not a readable file", ca.display()));
        }
    }
    Ok(SmtpTarget {
        host: url.host_str().unwrap_or_default().to_string(),
        port: url.port().unwrap_or(587),
        credentials,
        from,
        to,
        ca_file,
    })
}

#[cfg(test)]
mod tests;

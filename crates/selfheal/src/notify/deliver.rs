//! Sending one message to one target, in that target's documented format:
//! - json: `POST` the [`Notification`] as JSON (plus `text` and `title`);
//! - slack: `POST {"text": …}` (Slack and Mattermost incoming webhooks);
//! - discord: `POST {"content": …, "embeds": [{title, description, color, fields}]}`
//!   (Discord's Execute Webhook);
//! - ntfy: `POST /TOPIC` with the message as the body and `Title`, `Priority` (1-5) and
//!   `Tags` headers (ntfy's publish API);
//! - gotify: `POST /message` with `X-Gotify-Key: TOKEN` and `{"title", "message",
//!   "priority"}` (Gotify's message API);
//! - telegram: `POST BASE/botTOKEN/sendMessage` with `{"chat_id", "text", "parse_mode":
//!   "HTML"}` once per chat (Telegram's Bot API);
//! - pushover: `POST BASE/1/messages.json`, a form of `token`, `user`, `message`, `title`,
//!   `priority` and `device` when given (Pushover's message API);
//! - smtp: an email over SMTP with STARTTLS required (lettre).
//!
//! Errors never carry the target's URL: it holds secrets.

use super::message::Notification;
use super::target::{Endpoint, Kind, SmtpTarget, Target};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::Url;
use std::time::Duration;

/// One attempt's limit, connect to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    #[error("{0}")]
    Http(String),
    #[error("email: {0}")]
    Email(String),
    #[error("setup: {0}")]
    Setup(String),
}

/// A ready sender for one target.
pub enum Delivery {
    Http {
        kind: Kind,
        url: Url,
        token: Option<String>,
        client: reqwest::Client,
    },
    Telegram {
        base: Url,
        token: String,
        chats: Vec<String>,
        client: reqwest::Client,
    },
    Pushover {
        url: Url,
        token: String,
        user: String,
        devices: Option<String>,
        client: reqwest::Client,
    },
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: String,
        to: Vec<String>,
    },
}

fn http_client() -> Result<reqwest::Client, DeliveryError> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("selfheal/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DeliveryError::Setup(e.without_url().to_string()))
}

/// Sends one request; a non-2xx answer is an error. The error never carries the URL.
async fn send(req: reqwest::RequestBuilder) -> Result<(), DeliveryError> {
    let r = req
        .send()
        .await
        .map_err(|e| DeliveryError::Http(with_causes(&e.without_url())))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(r.status()))
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delivery")
    }
}

impl Delivery {
    pub fn new(t: &Target) -> Result<Self, DeliveryError> {
        match &t.endpoint {
            Endpoint::Http { url, token } => Ok(Delivery::Http {
                kind: t.kind,
                url: url.clone(),
                token: token.clone(),
                client: http_client()?,
            }),
            Endpoint::Telegram { base, token, chats } => Ok(Delivery::Telegram {
                base: base.clone(),
                token: token.clone(),
                chats: chats.clone(),
                client: http_client()?,
            }),
            Endpoint::Pushover {
                url,
                token,
                user,
                devices,
            } => Ok(Delivery::Pushover {
                url: url.clone(),
                token: token.clone(),
                user: user.clone(),
                devices: devices.clone(),
                client: http_client()?,
            }),
            Endpoint::Smtp(s) => smtp(s),
        }
    }

    pub async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        match self {
            Delivery::Http {
                kind,
                url,
                token,
                client,
            } => {
                let req = match kind {
                    Kind::Json => client.post(url.clone()).json(&n.json()),
                    Kind::Slack => client.post(url.clone()).json(&n.slack()),
                    Kind::Discord => client.post(url.clone()).json(&n.discord()),
                    Kind::Ntfy => {
                        let (priority, tags) = n.ntfy_priority_and_tags();
                        client
                            .post(url.clone())
                            .header("Title", header_safe(&n.title()))
                            .header("Priority", priority.to_string())
                            .header("Tags", tags)
                            .header("Content-Type", "text/plain; charset=utf-8")
                            .body(n.body())
                    }
                    Kind::Gotify => {
                        let mut u = url.clone();
                        let path = format!("{}/message", u.path().trim_end_matches('/'));
                        u.set_path(&path);
                        client
                            .post(u)
                            .header("X-Gotify-Key", token.as_deref().unwrap_or_default())
                            .json(&n.gotify())
                    }
                    // Delivery::new gives these kinds their own variants.
                    Kind::Smtp | Kind::Telegram | Kind::Pushover => {
                        return Err(DeliveryError::Setup(format!(
                            "{} is not a plain webhook",
                            kind.as_str()
                        )))
                    }
                };
                send(req).await
            }
            Delivery::Telegram {
                base,
                token,
                chats,
                client,
            } => {
                let mut u = base.clone();
                let path = format!("{}/bot{token}/sendMessage", u.path().trim_end_matches('/'));
                u.set_path(&path);
                // Every chat is tried; the first failure is the answer.
                let mut result = Ok(());
                for chat in chats {
                    let sent = send(client.post(u.clone()).json(&n.telegram(chat))).await;
                    if result.is_ok() {
                        result = sent;
                    }
                }
                result
            }
            Delivery::Pushover {
                url,
                token,
                user,
                devices,
                client,
            } => {
                let body = n.pushover_form(token, user, devices.as_deref());
                send(
                    client
                        .post(url.clone())
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(body),
                )
                .await
            }
            Delivery::Smtp {
                transport,
                from,
                to,
            } => {
                let mut b = Message::builder()
                    .from(parse_mailbox(from)?)
                    .subject(n.title());
                for a in to {
                    b = b.to(parse_mailbox(a)?);
                }
                let email = b
                    .body(n.body())
                    .map_err(|e| DeliveryError::Email(e.to_string()))?;
                transport
                    .send(email)
                    .await
                    .map(|_| ())
                    .map_err(|e| DeliveryError::Email(e.to_string()))
            }
        }
    }
}

/// An error and its causes, `outer: inner: …` (reqwest's own text is only the outer one).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

fn parse_mailbox(a: &str) -> Result<lettre::message::Mailbox, DeliveryError> {
    a.parse()
        .map_err(|e| DeliveryError::Email(format!("{a:?}: {e}")))
}

/// HTTP header values are ASCII here: other characters become `?`.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn smtp(s: &SmtpTarget) -> Result<Delivery, DeliveryError> {
    let setup = |e: String| DeliveryError::Setup(e);
    let mut tls = TlsParameters::builder(s.host.clone());
    if let Some(ca) = &s.ca_file {
        let pem = std::fs::read(ca).map_err(|e| setup(format!("ca-file {}: {e}", ca.display())))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| setup(format!("ca-file {}: {e}", ca.display())))?;
        tls = tls.add_root_certificate(cert);
    }
    let tls = tls.build_rustls().map_err(|e| setup(e.to_string()))?;
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(Tls::Required(tls))
        .hello_name(ClientId::Domain("selfheal".into()))
        .timeout(Some(TIMEOUT));
    if let Some((user, pass)) = &s.credentials {
        b = b.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    Ok(Delivery::Smtp {
        transport: b.build(),
        from: s.from.clone(),
        to: s.to.clone(),
    })
}

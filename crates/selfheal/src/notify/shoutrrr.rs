//! Shoutrrr's notification URLs (as Watchtower and Docker-Guardian users have them), read as
//! selfheal's own target URLs, so a user can paste theirs.

use url::Url;

/// A shoutrrr URL (`telegram://…`, `pushover://…`, `discord://…`, `gotify://…`, `ntfy://…`,
/// `slack://…`) as selfheal's own form, its `#name=…` kept; `None` for anything else.
pub(super) fn from_shoutrrr(raw: &str) -> Result<Option<String>, String> {
    let Some((scheme, _)) = raw.split_once("://") else {
        return Ok(None);
    };
    if !matches!(
        scheme,
        "telegram" | "pushover" | "discord" | "gotify" | "ntfy" | "slack"
    ) {
        return Ok(None);
    }
    let (body, fragment) = match raw.split_once('#') {
        Some((b, f)) => (b, format!("#{f}")),
        None => (raw, String::new()),
    };
    let u = Url::parse(body).map_err(|e| format!("not a URL: {e}"))?;
    let host = u.host_str().unwrap_or_default();
    let port = u.port().map_or(String::new(), |p| format!(":{p}"));
    let user = u.username();
    let password = u.password().unwrap_or_default();
    let path: Vec<&str> = u.path().split('/').filter(|p| !p.is_empty()).collect();
    let query: Vec<(String, String)> = u.query_pairs().into_owned().collect();
    let param = |k: &str| {
        query
            .iter()
            .find(|(q, _)| q.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let native = match scheme {
        // telegram://TOKEN@telegram?chats=…: the token is `BOTID:SECRET`, split by the URL
        // parser into user and password.
        "telegram" => {
            let token = if password.is_empty() {
                user.to_string()
            } else {
                format!("{user}:{password}")
            };
            let chats = param("chats")
                .or_else(|| param("channels"))
                .unwrap_or_default();
            format!(
                "telegram+https://api.telegram.org/?token={}&chats={}",
                enc(&token),
                enc(&chats)
            )
        }
        // pushover://shoutrrr:TOKEN@USER/?devices=…
        "pushover" => {
            let mut s = format!(
                "pushover+https://api.pushover.net/?token={password}&user={}",
                enc(host)
            );
            if let Some(d) = param("devices") {
                s.push_str(&format!("&devices={}", enc(&d)));
            }
            s
        }
        // discord://TOKEN@WEBHOOK_ID
        "discord" => format!("discord+https://discord.com/api/webhooks/{host}/{user}"),
        // gotify://host[:port][/path]/TOKEN[?disabletls=yes]
        "gotify" => {
            let (token, sub) = path
                .split_last()
                .ok_or("gotify needs the token as the last path part")?;
            let tls = if param("disabletls")
                .is_some_and(|v| matches!(v.as_str(), "yes" | "true" | "1"))
            {
                "http"
            } else {
                "https"
            };
            let sub = sub.iter().map(|p| format!("/{p}")).collect::<String>();
            format!("gotify+{tls}://{host}{port}{sub}/?token={token}")
        }
        // ntfy://[user:pass@][host]/TOPIC; ntfy.sh when the host is left out.
        "ntfy" => {
            let auth = if user.is_empty() && password.is_empty() {
                String::new()
            } else {
                format!("{user}:{password}@")
            };
            let host = if host.is_empty() { "ntfy.sh" } else { host };
            let tls = if param("scheme").as_deref() == Some("http") {
                "http"
            } else {
                "https"
            };
            format!("ntfy+{tls}://{auth}{host}{port}/{}", path.join("/"))
        }
        // slack://[botname@]A/B/C: a webhook's three tokens.
        "slack" => {
            let tokens: Vec<&str> = std::iter::once(host).chain(path.iter().copied()).collect();
            if tokens.len() != 3 || tokens.iter().any(|t| t.is_empty()) {
                return Err("slack:// needs a webhook's three tokens: slack://A/B/C".into());
            }
            format!(
                "slack+https://hooks.slack.com/services/{}",
                tokens.join("/")
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(native + &fragment))
}

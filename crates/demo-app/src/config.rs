//! Configuration of the demo app, parsed from a lookup function so tests never touch the
//! process environment.

use std::time::Duration;

/// Settings read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// TCP port to listen on (all interfaces).
    pub port: u16,
    /// How long `/ready` answers 503 after start, standing in for a warm-up.
    pub ready_delay: Duration,
    /// Bearer token that enables `/chaos/*`; `None` keeps fault injection off (404).
    pub chaos_token: Option<String>,
    /// How long in-flight requests may run after SIGTERM before the process exits anyway.
    pub shutdown_deadline: Duration,
}

/// A setting with a value that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Variable name.
    pub key: &'static str,
    /// The value that was rejected.
    pub value: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid value {:?} for {}", self.value, self.key)
    }
}

impl std::error::Error for ConfigError {}

/// Default port when `PORT` is unset.
pub const DEFAULT_PORT: u16 = 8080;

impl Config {
    /// Reads `PORT`, `READY_DELAY`, `CHAOS_TOKEN` and `SHUTDOWN_DEADLINE` through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &'static str| lookup(key).filter(|v| !v.trim().is_empty());
        let port = match get("PORT") {
            Some(v) => v.trim().parse().map_err(|_| ConfigError {
                key: "PORT",
                value: v,
            })?,
            None => DEFAULT_PORT,
        };
        let duration = |key: &'static str, default: Duration| match get(key) {
            Some(v) => parse_duration(&v).ok_or(ConfigError { key, value: v }),
            None => Ok(default),
        };
        Ok(Self {
            port,
            ready_delay: duration("READY_DELAY", Duration::from_secs(2))?,
            chaos_token: get("CHAOS_TOKEN"),
            shutdown_deadline: duration("SHUTDOWN_DEADLINE", Duration::from_secs(5))?,
        })
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }
}

/// Parses `250ms`, `2s`, `1m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "" | "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number.checked_mul(60)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let c = config(&[]).expect("defaults parse");
        assert_eq!(c.port, 8080);
        assert_eq!(c.ready_delay, Duration::from_secs(2));
        assert_eq!(c.chaos_token, None);
        assert_eq!(c.shutdown_deadline, Duration::from_secs(5));
    }

    #[test]
    fn values_are_read() {
        let c = config(&[
            ("PORT", "9000"),
            ("READY_DELAY", "250ms"),
            ("CHAOS_TOKEN", "s3cret"),
            ("SHUTDOWN_DEADLINE", "1m"),
        ])
        .expect("parses");
        assert_eq!(c.port, 9000);
        assert_eq!(c.ready_delay, Duration::from_millis(250));
        assert_eq!(c.chaos_token.as_deref(), Some("s3cret"));
        assert_eq!(c.shutdown_deadline, Duration::from_secs(60));
    }

    #[test]
    fn empty_token_keeps_chaos_off() {
        assert_eq!(
            config(&[("CHAOS_TOKEN", " ")]).expect("parses").chaos_token,
            None
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("READY_DELAY", "soon")]).expect_err("rejected");
        assert_eq!(err.key, "READY_DELAY");
        assert_eq!(
            config(&[("PORT", "99999")]).expect_err("rejected").key,
            "PORT"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("ms"), None);
        assert_eq!(parse_duration("5h"), None);
    }
}

//! The app's own metrics: requests by route and status, latency, leaked bytes, start time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Labels of one request: method, matched route (not the raw path, to keep them bounded), status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route template, e.g. `/chaos/leak`, or `unmatched`.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route template.
    pub route: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Every metric the app exports, registered once.
#[derive(Debug)]
pub struct AppMetrics {
    registry: Registry,
    /// `demo_app_http_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `demo_app_http_request_duration_seconds`.
    pub latency: LatencyFamily,
    /// `demo_app_leaked_bytes`: memory held by `/chaos/leak`.
    pub leaked_bytes: Gauge,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s, enough to show `/chaos/slow`.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl AppMetrics {
    /// Creates and registers the metrics; `start_time_seconds` is the process start (Unix time).
    pub fn new(start_time_seconds: i64) -> Self {
        let mut registry = Registry::with_prefix("demo_app");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from request to response",
            Unit::Seconds,
            latency.clone(),
        );
        let leaked_bytes = Gauge::default();
        registry.register(
            "leaked_bytes",
            "Memory held by /chaos/leak",
            leaked_bytes.clone(),
        );
        let start = Gauge::<i64>::default();
        start.set(start_time_seconds);
        registry.register_with_unit(
            "start_time",
            "Process start, Unix time",
            Unit::Seconds,
            start,
        );
        Self {
            registry,
            requests,
            latency,
            leaked_bytes,
        }
    }

    /// Encodes every metric as OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

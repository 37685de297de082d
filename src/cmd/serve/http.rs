//! serve's HTTP side: the accept loop (plain or TLS), basic authentication, and the four
//! routes. hyper directly rather than a framework: four fixed GET routes need no router,
//! and the TLS accept loop has to be ours anyway (see the README's dependency notes).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, RwLock};
use tokio_rustls::TlsAcceptor;

use super::page;
use super::probes::{Fleet, Memory, Outcome};
use super::webconfig::Access;
use crate::health::output;
use crate::health::report::{Check, CheckLimits, Report, Status, Thresholds, SCHEMA_VERSION};
use crate::output::prometheus::Exposition;

/// Open connections get this long to finish once serve is told to stop.
const DRAIN: Duration = Duration::from_millis(300);

/// Everything a request may need.
pub(crate) struct App {
    /// Replaced as a whole by a reload.
    pub fleet: RwLock<Arc<Fleet>>,
    /// Shared with the probes, which run as tasks of their own.
    pub memory: Arc<Memory>,
    pub access: RwLock<Arc<Access>>,
}

/// Accepts connections until `stop` turns true, then gives the open ones [`DRAIN`].
pub(crate) async fn serve(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!("accepting a connection: {error}");
                continue;
            }
        };
        let app = app.clone();
        let watcher = graceful.watcher();
        let tls = app.access.read().await.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream, app, watcher).await,
                Some(acceptor) => {
                    if let Some(stream) = tls_handshake(&acceptor, stream).await {
                        connection(stream, app, watcher).await
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after {DRAIN:?}: closed");
    }
}

async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: tokio::net::TcpStream,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!("TLS handshake failed: {error}");
            None
        }
        Err(_) => None,
    }
}

async fn connection<I>(io: I, app: Arc<App>, watcher: hyper_util::server::graceful::Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Each request runs in a task of its own: a scraper that hangs up mid-probe does not
    // cancel the probe the other scrapes are waiting for.
    let service = hyper::service::service_fn(move |request| {
        let app = app.clone();
        async move {
            let answered = tokio::spawn(async move { route(&app, request).await }).await;
            Ok::<_, Infallible>(answered.unwrap_or_else(|error| {
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the request failed: {error}\n"),
                )
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(conn).await {
        tracing::debug!("HTTP connection: {error}");
    }
}

/// Authentication first, then the route.
async fn route(app: &App, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let access = app.access.read().await.clone();
    if let Some(response) = access.refusal(request.headers()) {
        return response;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_string());
    }
    let fleet = app.fleet.read().await.clone();
    let budget = scrape_budget(request.headers());
    match request.uri().path() {
        "/metrics" => {
            let outcomes = fleet.probe_all(&app.memory, budget).await;
            metrics(&outcomes, &app.memory)
        }
        "/probe" => probe(&fleet, &app.memory, request.uri().query(), budget).await,
        "/health" => {
            let report = merge(&fleet.probe_all(&app.memory, budget).await);
            let status = match report.status {
                Status::Ok | Status::Warning => StatusCode::OK,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            with_type(status, output::json(&report), "application/json")
        }
        "/" => {
            let report = merge(&fleet.probe_all(&app.memory, budget).await);
            with_type(
                StatusCode::OK,
                page::render(&report, &app.memory),
                "text/html; charset=utf-8",
            )
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: serve answers /metrics, /probe?cluster=NAME, /health and /\n".into(),
        ),
    }
}

/// How long a scrape may wait for running probes: what Prometheus says it will wait
/// (`X-Prometheus-Scrape-Timeout-Seconds`), less half a second for the answer to travel
/// (blackbox_exporter's margin). None: no such header, wait for the probes (each ends
/// by `[health] timeout`).
fn scrape_budget(headers: &hyper::HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get("x-prometheus-scrape-timeout-seconds")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !seconds.is_finite() || seconds <= 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        (seconds - 0.5).max(seconds / 2.0).min(3600.0),
    ))
}

/// `/probe?cluster=NAME`: Prometheus' multi-target pattern.
async fn probe(
    fleet: &Arc<Fleet>,
    memory: &Arc<Memory>,
    query: Option<&str>,
    budget: Option<Duration>,
) -> Response<Full<Bytes>> {
    let names = || fleet.clusters.join(", ");
    let Some(name) = cluster_param(query.unwrap_or("")) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "give the cluster: /probe?cluster=NAME (one of: {})\n",
                names()
            ),
        );
    };
    match fleet.probe(&name, memory, budget).await {
        Some(outcome) => metrics(&[(name, outcome)], memory),
        None => text(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown cluster {name:?}: this serve answers for {}\n",
                names()
            ),
        ),
    }
}

/// The `cluster` parameter of a query string, percent-decoded.
fn cluster_param(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "cluster").then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The textfile's metrics for these clusters, then serve's own.
fn metrics(outcomes: &[(String, Outcome)], memory: &Memory) -> Response<Full<Bytes>> {
    let mut body = memory
        .rendered(outcomes, || output::prometheus(&merge(outcomes)))
        .to_string();
    let counters = memory
        .counters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut own = Exposition::new();
    own.gauge(
        "odoo_db_probe_duration_seconds",
        "How long serve's last probe of the cluster took.",
    );
    for (name, _) in outcomes {
        let c = counters.get(name).copied().unwrap_or_default();
        own.sample(
            "odoo_db_probe_duration_seconds",
            &[("cluster", name)],
            c.last_duration,
        );
    }
    own.counter("odoo_db_probes_total", "Probes serve ran of the cluster.");
    for (name, _) in outcomes {
        let c = counters.get(name).copied().unwrap_or_default();
        own.sample(
            "odoo_db_probes_total",
            &[("cluster", name)],
            c.probes as f64,
        );
    }
    own.counter(
        "odoo_db_probe_errors_total",
        "Probes of the cluster that met an error (a server unreachable or failing, the deadline, a setup error).",
    );
    for (name, _) in outcomes {
        let c = counters.get(name).copied().unwrap_or_default();
        own.sample(
            "odoo_db_probe_errors_total",
            &[("cluster", name)],
            c.errors as f64,
        );
    }
    body.push_str(&own.finish());
    with_type(
        StatusCode::OK,
        body,
        "text/plain; version=0.0.4; charset=utf-8",
    )
}

/// One report of several clusters' probes; a probe that could not run is an UNKNOWN
/// check of its cluster.
pub(crate) fn merge(outcomes: &[(String, Outcome)]) -> Report {
    let mut merged = Report {
        schema_version: SCHEMA_VERSION,
        status: Status::Ok,
        exit_code: 0,
        started_at: chrono::Utc::now(),
        duration_seconds: 0.0,
        timeout_seconds: 0.0,
        deadline_hit: false,
        thresholds: Thresholds::default(),
        limits: CheckLimits::default(),
        clusters: Vec::new(),
        checks: Vec::new(),
    };
    for (name, outcome) in outcomes {
        match outcome.as_ref() {
            Ok(report) => {
                merged.started_at = merged.started_at.min(report.started_at);
                merged.duration_seconds = merged.duration_seconds.max(report.duration_seconds);
                merged.timeout_seconds = report.timeout_seconds;
                merged.deadline_hit |= report.deadline_hit;
                merged.thresholds = report.thresholds;
                merged.limits = report.limits;
                merged.status = merged.status.worst(report.status);
                merged.clusters.extend(report.clusters.iter().cloned());
                merged.checks.extend(report.checks.iter().cloned());
            }
            Err(message) => {
                merged.status = merged.status.worst(Status::Unknown);
                merged.checks.push(Check {
                    status: Status::Unknown,
                    cluster: Some(name.clone()),
                    server: None,
                    check: "run",
                    message: message.clone(),
                    hint: None,
                });
            }
        }
    }
    merged.exit_code = merged.status.exit_code();
    merged
}

pub(crate) fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, body, "text/plain; charset=utf-8")
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_parameter_is_decoded() {
        assert_eq!(cluster_param("cluster=prod"), Some("prod".into()));
        assert_eq!(cluster_param("a=1&cluster=p%20x"), Some("p x".into()));
        assert_eq!(cluster_param("cluster=%zz"), Some("%zz".into()));
        assert_eq!(cluster_param("cluster=%4"), Some("%4".into()));
        assert_eq!(cluster_param("other=1"), None);
    }

    #[test]
    fn the_scrape_budget_is_prometheus_timeout_less_a_margin() {
        let budget = |value: &str| {
            let mut headers = hyper::HeaderMap::new();
            headers.insert(
                "X-Prometheus-Scrape-Timeout-Seconds",
                value.parse().unwrap(),
            );
            scrape_budget(&headers)
        };
        assert_eq!(budget("10"), Some(Duration::from_millis(9500)));
        assert_eq!(budget(" 2.5 "), Some(Duration::from_secs(2)));
        // A short timeout keeps half of itself.
        assert_eq!(budget("0.6"), Some(Duration::from_millis(300)));
        for refused in ["0", "-3", "NaN", "inf", "ten", ""] {
            assert_eq!(budget(refused), None, "{refused:?}");
        }
        assert_eq!(scrape_budget(&hyper::HeaderMap::new()), None);
    }
}

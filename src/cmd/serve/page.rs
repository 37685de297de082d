//! The status page (`GET /`): for a person, not a scraper. One HTML document with
//! everything inline (no external assets: it works offline and behind any proxy), that
//! refreshes itself in place by fetching itself again every 15 s. Per cluster: its
//! servers with state, byte and time lag; per standby a chart of the last hour's lag
//! from serve's memory; the failing checks with what to do; when the probe ran.
//!
//! It shows what the report shows, server addresses as host:port: never a password or a
//! connection string. Every text is HTML-escaped; the data-* attributes are there for
//! scripts (and the browser test) to read the state without parsing prose.

use std::fmt::Write;

use super::probes::{Memory, Point, HISTORY_SPAN};
use crate::health::report::{ClusterReport, Report, ServerReport, Status};
use crate::units::format_bytes;

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}table{border-collapse:collapse}\
td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}\
.OK{color:#1a7f37}.WARNING{color:#9a6700}.CRITICAL{color:#cf222e}.UNKNOWN{color:#8250df}\
.state{font-weight:bold}.hint{color:#555}svg{background:#fff;border:1px solid #ddd}\
.legend{font-size:.8em;color:#555}";

/// Refreshes the page in place: fetch it again, swap the content.
const SCRIPT: &str = "setInterval(function(){fetch(location.pathname,{cache:'no-store'})\
.then(function(r){return r.text()}).then(function(t){var d=new DOMParser().parseFromString(t,'text/html');\
var n=d.getElementById('content');if(n){document.getElementById('content').replaceWith(n)}})\
.catch(function(){})},15000);";

pub(crate) fn render(report: &Report, memory: &Memory) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>odoo-db: {status}</title><style>{STYLE}</style></head><body>\
         <div id=\"content\" data-state=\"{status}\"><h1>odoo-db <span class=\"state {status}\">{status}</span></h1>\
         <p>Probed at <time id=\"probed-at\">{at}</time> in {took:.2} s.</p>",
        status = report.status.as_str(),
        at = report.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        took = report.duration_seconds,
    );
    for cluster in &report.clusters {
        render_cluster(&mut page, cluster, memory);
    }
    render_checks(&mut page, report);
    let _ = write!(page, "</div><script>{SCRIPT}</script></body></html>");
    page
}

fn render_cluster(page: &mut String, cluster: &ClusterReport, memory: &Memory) {
    let _ = write!(
        page,
        "<section class=\"cluster\" data-cluster=\"{name}\" data-state=\"{state}\">\
         <h2>{name} <small>({kind})</small> <span class=\"state {state}\">{state}</span></h2>\
         <table><tr><th>server</th><th>role</th><th>address</th><th>state</th>\
         <th>byte lag</th><th>time lag</th></tr>",
        name = escape(&cluster.name),
        kind = cluster.kind.as_str(),
        state = cluster.status.as_str(),
    );
    server_row(page, &cluster.primary.server, "primary", None, None);
    for standby in &cluster.standbys {
        server_row(
            page,
            &standby.server,
            "standby",
            Some(standby.lag_bytes),
            Some(standby.lag_seconds),
        );
    }
    page.push_str("</table>");
    for standby in &cluster.standbys {
        let points = memory.history_of(&cluster.name, &standby.server.name);
        let _ = write!(
            page,
            "<h3>{} — the last hour</h3>",
            escape(&standby.server.name)
        );
        chart(page, &points);
    }
    page.push_str("</section>");
}

fn server_row(
    page: &mut String,
    server: &ServerReport,
    role: &str,
    bytes: Option<Option<u64>>,
    seconds: Option<Option<f64>>,
) {
    let state = server.status.as_str();
    let bytes_text = match bytes {
        None => String::new(),
        Some(Some(b)) => format_bytes(b),
        Some(None) => "unknown".to_string(),
    };
    let seconds_text = match seconds {
        None => String::new(),
        Some(Some(s)) => format!("{s:.3} s"),
        Some(None) => "unknown".to_string(),
    };
    let _ = write!(
        page,
        "<tr class=\"server\" data-server=\"{name}\" data-role=\"{role}\" data-state=\"{state}\" \
         data-lag-bytes=\"{raw_bytes}\" data-lag-seconds=\"{raw_seconds}\">\
         <td>{name}</td><td>{role}</td><td>{address}</td><td class=\"state {state}\">{state}</td>\
         <td class=\"lag-bytes\">{bytes_text}</td><td class=\"lag-seconds\">{seconds_text}</td></tr>",
        name = escape(&server.name),
        address = escape(&server.address),
        raw_bytes = bytes.flatten().map(|b| b.to_string()).unwrap_or_default(),
        raw_seconds = seconds.flatten().map(|s| s.to_string()).unwrap_or_default(),
    );
}

fn render_checks(page: &mut String, report: &Report) {
    let failing: Vec<_> = report
        .checks
        .iter()
        .filter(|check| check.status != Status::Ok)
        .collect();
    page.push_str("<h2>Failing checks</h2>");
    if failing.is_empty() {
        page.push_str("<p id=\"no-failing-checks\">None.</p>");
        return;
    }
    page.push_str("<table id=\"failing-checks\"><tr><th>state</th><th>where</th><th>check</th><th>what</th><th>what to do</th></tr>");
    for check in failing {
        let place = [check.cluster.as_deref(), check.server.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = write!(
            page,
            "<tr class=\"check\" data-state=\"{state}\"><td class=\"state {state}\">{state}</td>\
             <td>{place}</td><td>{name}</td><td>{message}</td><td class=\"hint\">{hint}</td></tr>",
            state = check.status.as_str(),
            place = escape(&place),
            name = escape(check.check),
            message = escape(&check.message),
            hint = escape(check.hint.as_deref().unwrap_or("")),
        );
    }
    page.push_str("</table>");
}

/// Byte lag (blue) and time lag (orange) over the last hour, each scaled to its own
/// maximum (given in the legend).
fn chart(page: &mut String, points: &[Point]) {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    let Some(last) = points.last() else {
        page.push_str("<p class=\"legend\">No probe yet.</p>");
        return;
    };
    let start = last.at - HISTORY_SPAN.as_secs_f64();
    let max_bytes = points.iter().filter_map(|p| p.bytes).max().unwrap_or(0);
    let max_seconds = points
        .iter()
        .filter_map(|p| p.seconds)
        .fold(0.0_f64, f64::max);
    let line = |value: &dyn Fn(&Point) -> Option<f64>, max: f64| {
        let mut path = String::new();
        for point in points {
            if let Some(v) = value(point) {
                let x = (point.at - start) / HISTORY_SPAN.as_secs_f64() * W;
                let y = if max > 0.0 {
                    H - v / max * (H - 4.0) - 2.0
                } else {
                    H - 2.0
                };
                let _ = write!(path, "{x:.1},{y:.1} ");
            }
        }
        path
    };
    let _ = write!(
        page,
        "<svg class=\"chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"lag over the last hour\">\
         <text x=\"4\" y=\"{H}\" dy=\"-4\" font-size=\"10\" fill=\"#888\">-1 h</text>\
         <text x=\"{W}\" y=\"{H}\" dx=\"-24\" dy=\"-4\" font-size=\"10\" fill=\"#888\">now</text>\
         <polyline fill=\"none\" stroke=\"#0969da\" stroke-width=\"1.5\" points=\"{bytes}\"/>\
         <polyline fill=\"none\" stroke=\"#bc4c00\" stroke-width=\"1.5\" points=\"{seconds}\"/></svg>\
         <p class=\"legend\"><span style=\"color:#0969da\">byte lag (max {max_bytes_text})</span> · \
         <span style=\"color:#bc4c00\">time lag (max {max_seconds:.3} s)</span> · {n} probes</p>",
        bytes = line(&|p| p.bytes.map(|b| b as f64), max_bytes as f64),
        seconds = line(&|p| p.seconds, max_seconds),
        max_bytes_text = format_bytes(max_bytes),
        n = points.len(),
    );
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

//! `odoo-db serve`: health as a process that stays up, for Prometheus and for people.
//!
//! The timer runs one `health` a minute and pays every connection each time; a platform
//! scraped every 15 s, or with many clusters, wants an exporter that keeps its sessions
//! and answers scrapes cheaply. This is health's own engine (probe, judge, report) with
//! three differences: sessions come from pools that stay ([`pools`]), probes are shared
//! between scrapes and rate-limited ([`probes`]), and the report is answered over HTTP
//! ([`http`]: `/metrics`, `/probe?cluster=NAME`, `/health`, and the status page [`page`]),
//! behind TLS and basic authentication when a web config says so ([`webconfig`]).
//!
//! A run, top to bottom:
//! 1. load the config, the clusters to serve (`--cluster`, else all) and the web config:
//!    any of them wrong is refused (exit 2) before anything listens;
//! 2. open the fleet: the SSH masters of the clusters behind a bastion (sessions open on
//!    the first probe), and bind the listener;
//! 3. answer requests until SIGTERM (or SIGINT); on SIGHUP load everything again and
//!    swap it in, or keep the old and log why when the new does not load;
//! 4. on SIGTERM stop accepting, give open requests a moment, close the pooled sessions
//!    and the SSH masters, exit 0 (all within a second).
//!
//! Under systemd (`Type=notify`) each change of state is told to the service manager
//! ([`tell_systemd`]): ready once it listens, reloading and ready again around a SIGHUP,
//! stopping on SIGTERM; so `systemctl start` returns when scrapes can be answered, and
//! units ordered after it start then.

mod http;
mod page;
mod pools;
mod probes;
mod webconfig;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, RwLock};

use crate::cli::ServeArgs;
use crate::config::{ClusterKind, Config};
use crate::error::{Context, Error, Result};
use http::App;
use probes::{Fleet, Memory};
use webconfig::Access;

/// Closing the sessions and SSH masters gets at most this long at exit.
const CLOSE_LIMIT: Duration = Duration::from_millis(500);

pub async fn run(config_path: PathBuf, args: &ServeArgs) -> Result<u8> {
    // 1. What to serve, where, to whom.
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let (config, clusters, access) = load(&config_path, args)?;
    let listen = args.listen.unwrap_or(config.serve.listen);
    if !listen.ip().is_loopback() && config.serve.web_config.is_none() {
        tracing::warn!(
            "listening on {listen}, beyond loopback, without [serve] web_config: anyone who \
             can reach it reads the health of every cluster; configure TLS and basic \
             authentication (see the README)"
        );
    }

    // 2. The fleet and the listener.
    let fleet = Fleet::open(config, clusters).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Error::refused(format!(
            "cannot listen on {listen}: {e} (give another --listen)"
        ))
    })?;
    let scheme = if access.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let status = format!(
        "serving {} on {scheme}://{listen}/",
        fleet.clusters.join(", ")
    );
    tracing::info!("{status}");
    let app = Arc::new(App {
        fleet: RwLock::new(Arc::new(fleet)),
        memory: Arc::new(Memory::default()),
        access: RwLock::new(access),
    });

    // 3. Requests until told to stop; reloads meanwhile.
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(http::serve(listener, app.clone(), stopped));
    tell_systemd(&[NotifyState::Ready, NotifyState::Status(&status)]);
    loop {
        let event = {
            let fleet = app.fleet.read().await.clone();
            tokio::select! {
                _ = terminate.recv() => Event::Stop,
                _ = interrupt.recv() => Event::Stop,
                _ = hangup.recv() => Event::Reload,
                _ = fleet.masters_lost.notified() => Event::MastersLost,
            }
        };
        match event {
            Event::Stop => break,
            Event::Reload => {
                // systemd 253+ wants the monotonic time with RELOADING=1.
                let mut reloading = vec![NotifyState::Reloading];
                reloading.extend(NotifyState::monotonic_usec_now().ok());
                tell_systemd(&reloading);
                reload(&app, &config_path, args).await;
                tell_systemd(&[NotifyState::Ready]);
            }
            Event::MastersLost => reopen(&app).await,
        }
    }

    // 4. Stop: no new connections, the open ones drained, then sessions and masters.
    tracing::info!("stopping");
    tell_systemd(&[NotifyState::Stopping]);
    let _ = stop.send(true);
    let _ = server.await;
    let fleet = app.fleet.read().await.clone();
    let closing = async {
        match Arc::try_unwrap(fleet) {
            Ok(fleet) => fleet.close().await,
            Err(shared) => shared.sessions.close(),
        }
    };
    if tokio::time::timeout(CLOSE_LIMIT, closing).await.is_err() {
        tracing::warn!("closing the sessions and SSH masters took longer than {CLOSE_LIMIT:?}");
    }
    Ok(0)
}

/// Tells the service manager (systemd's `$NOTIFY_SOCKET`, when there is one) what serve
/// is doing. Without one it does nothing; a failure to tell is logged, never fatal: the
/// service itself works either way.
fn tell_systemd(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!("telling systemd ($NOTIFY_SOCKET) the service's state: {error}");
    }
}

/// What the main loop waits for.
enum Event {
    Stop,
    Reload,
    MastersLost,
}

/// The config, the clusters to serve and the web config; refused when any is wrong.
fn load(path: &Path, args: &ServeArgs) -> Result<(Config, Vec<String>, Arc<Access>)> {
    let config = Config::load(path)?;
    let clusters = if args.cluster.is_empty() {
        let mut names: Vec<(bool, String)> = config
            .clusters
            .iter()
            .map(|(name, c)| (c.kind != ClusterKind::Production, name.clone()))
            .collect();
        names.sort();
        names.into_iter().map(|(_, name)| name).collect()
    } else {
        for name in &args.cluster {
            config.cluster(name)?;
        }
        let mut names = args.cluster.clone();
        names.dedup();
        names
    };
    let access = match &config.serve.web_config {
        Some(web_config) => Access::load(web_config)?,
        None => Arc::new(Access::default()),
    };
    Ok((config, clusters, access))
}

/// SIGHUP: everything loaded again and swapped in; what does not load leaves the running
/// configuration as it was, and the log says why.
async fn reload(app: &App, path: &Path, args: &ServeArgs) {
    let (config, clusters, access) = match load(path, args) {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!("reload refused, serving with the previous configuration: {error}");
            return;
        }
    };
    if config.serve.listen != app.fleet.read().await.config.serve.listen && args.listen.is_none() {
        tracing::warn!("[serve] listen changed: it takes effect at the next restart");
    }
    let fleet = match Fleet::open(config, clusters).await {
        Ok(fleet) => fleet,
        Err(error) => {
            tracing::error!("reload refused, serving with the previous configuration: {error}");
            return;
        }
    };
    *app.access.write().await = access;
    swap(app, fleet).await;
    tracing::info!("configuration reloaded from {}", path.display());
}

/// A server behind a bastion could not be reached: unless every SSH master still
/// answers (then the server itself is down, and new masters would not bring it back),
/// the masters are opened again (with new pools, since the forwards' local ports
/// change) for the next probe.
async fn reopen(app: &App) {
    let (config, clusters) = {
        // Asked outside the lock: a reload must not wait for the masters' answers.
        let fleet = app.fleet.read().await.clone();
        if fleet.ssh_masters_answer().await {
            tracing::debug!(
                "a server behind a bastion is unreachable but every SSH master answers: not opening them again"
            );
            return;
        }
        (fleet.config.clone(), fleet.clusters.clone())
    };
    match Fleet::open(config, clusters).await {
        Ok(fleet) => {
            swap(app, fleet).await;
            tracing::info!(
                "SSH masters opened again after a server behind a bastion was unreachable"
            );
        }
        Err(error) => tracing::warn!("opening the SSH masters again: {error}"),
    }
}

/// Puts `fleet` in service and closes the one it replaces.
async fn swap(app: &App, fleet: Fleet) {
    app.memory.forget_all_but(&fleet.clusters);
    let old = std::mem::replace(&mut *app.fleet.write().await, Arc::new(fleet));
    match Arc::try_unwrap(old) {
        Ok(old) => old.close().await,
        // Requests still use it: its sessions close now, its SSH masters when the last
        // of them ends.
        Err(shared) => shared.sessions.close(),
    }
}

//! `odoo-db list`: what the catalog manages, with live sizes from the servers.
//!
//! The catalog says which database belongs to which customer and what state it is in
//! (including the in-between states of an interrupted recreate); each cluster says
//! whether the database is really there and how big it is. Both are shown, so a
//! catalog entry whose database is missing is visible at a glance.

use std::collections::HashMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::cli::{ListArgs, ListFormat};
use crate::config::Config;
use crate::error::Result;
use crate::servers::Servers;
use crate::units::format_bytes;

#[derive(Debug, Serialize)]
pub struct Entry {
    pub customer: String,
    pub name: String,
    pub environment: String,
    pub cluster: String,
    pub state: String,
    /// The step an unfinished recreate or restore reached (`catalog.recreates`), so an
    /// interrupted one shows where it stopped; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub owner: String,
    /// Whether the database exists on its cluster now (null: cluster unreachable).
    pub present: Option<bool>,
    /// `pg_database_size` in bytes (null: missing or cluster unreachable).
    pub size_bytes: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When suspend took the customer's access away (resume gives it back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_since: Option<DateTime<Utc>>,
    /// When retire dropped it (its archive: `list --all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
    /// The latest finished refresh of an integration database; absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<Refreshed>,
}

/// A refresh as `list` shows it: when, from where, neutralized or not.
#[derive(Debug, Serialize)]
pub struct Refreshed {
    pub at: DateTime<Utc>,
    pub source: Option<String>,
    pub server: Option<String>,
    pub neutralized: bool,
}

/// A name a retired customer held, never given again (`list --all`).
#[derive(Debug, Serialize)]
pub struct TombstoneEntry {
    pub name: String,
    pub kind: String,
    pub customer: String,
    pub environment: String,
    pub cluster: String,
    pub archive: Option<String>,
    pub retired_at: DateTime<Utc>,
}

pub async fn run(config: &Config, args: &ListArgs) -> Result<String> {
    let servers = Servers::open(config).await?;
    let catalog = Catalog::open(&servers).await?;
    let mut entries: Vec<Entry> = catalog
        .database_listing()
        .await?
        .into_iter()
        .map(|row| Entry {
            customer: row.customer,
            name: row.name,
            environment: row.environment,
            cluster: row.cluster,
            state: row.state,
            step: row.step,
            owner: row.owner,
            present: None,
            size_bytes: None,
            created_at: row.created_at,
            updated_at: row.updated_at,
            suspended_since: None,
            retired_at: None,
            refreshed: None,
        })
        .collect();
    apply_lifecycle_states(&catalog, &mut entries).await?;
    add_refreshes(&catalog, &mut entries).await?;

    let sizes = cluster_sizes(&servers).await;
    for entry in &mut entries {
        if let Some(Some(sizes)) = sizes.get(&entry.cluster) {
            let size = sizes.get(&entry.name).copied();
            entry.present = Some(size.is_some());
            entry.size_bytes = size;
        }
    }
    let tombstones = if args.all {
        Some(tombstone_entries(&catalog).await?)
    } else {
        None
    };
    Ok(match (args.format, tombstones) {
        (ListFormat::Json, None) => {
            serde_json::to_string_pretty(&entries).expect("entries serialize") + "\n"
        }
        (ListFormat::Json, Some(tombstones)) => {
            serde_json::to_string_pretty(
                &serde_json::json!({ "databases": entries, "tombstones": tombstones }),
            )
            .expect("entries serialize")
                + "\n"
        }
        (ListFormat::Table, None) => table(&entries),
        (ListFormat::Table, Some(tombstones)) => {
            table(&entries) + "\n" + &tombstone_table(&tombstones)
        }
    })
}

/// The lifecycle's states over the catalog's: `suspended since …` and `retired`.
async fn apply_lifecycle_states(catalog: &Catalog, entries: &mut [Entry]) -> Result<()> {
    let states = catalog.lifecycle_states().await?;
    for entry in entries.iter_mut() {
        let Some(state) = states
            .iter()
            .find(|s| s.name == entry.name && s.environment == entry.environment)
        else {
            continue;
        };
        entry.suspended_since = state.suspended_at;
        entry.retired_at = state.retired_at;
        if state.retired_at.is_some() {
            entry.state = "retired".to_string();
        } else if let Some(since) = state.suspended_at {
            entry.state = format!("suspended since {}", since.format("%Y-%m-%d %H:%M UTC"));
        }
    }
    Ok(())
}

/// The latest refresh of each integration database, from the catalog.
async fn add_refreshes(catalog: &Catalog, entries: &mut [Entry]) -> Result<()> {
    let refreshes = catalog.finished_refreshes().await?;
    for entry in entries
        .iter_mut()
        .filter(|e| e.environment == "integration")
    {
        entry.refreshed = refreshes
            .iter()
            .find(|r| r.database == entry.name)
            .map(|r| Refreshed {
                at: r.finished_at,
                source: r.source_database.clone(),
                server: r.source_server.clone(),
                neutralized: r.neutralized,
            });
    }
    Ok(())
}

async fn tombstone_entries(catalog: &Catalog) -> Result<Vec<TombstoneEntry>> {
    Ok(catalog
        .tombstones()
        .await?
        .into_iter()
        .map(|t| TombstoneEntry {
            name: t.name,
            kind: t.kind,
            customer: t.customer,
            environment: t.environment,
            cluster: t.cluster,
            archive: t.archive_path,
            retired_at: t.retired_at,
        })
        .collect())
}

fn tombstone_table(tombstones: &[TombstoneEntry]) -> String {
    let mut text = String::from("TOMBSTONES (retired names, never given again)\n");
    if tombstones.is_empty() {
        text.push_str("(none)\n");
    }
    for t in tombstones {
        writeln!(
            text,
            "{} {}  {}  {}  {}  retired {}  archive {}",
            t.kind,
            t.name,
            t.customer,
            t.environment,
            t.cluster,
            t.retired_at.format("%Y-%m-%d %H:%M"),
            t.archive.as_deref().unwrap_or("-")
        )
        .ok();
    }
    text
}

/// Database sizes per cluster; None for a cluster that could not be asked (warned).
async fn cluster_sizes(servers: &Servers) -> HashMap<String, Option<HashMap<String, i64>>> {
    let clusters: Vec<String> = servers.config().clusters.keys().cloned().collect();
    let results = join_all(clusters.iter().map(|cluster| async move {
        let sizes = async {
            let client = servers.connect_primary(cluster).await?;
            let rows = client
                .query(
                    "SELECT datname::text, pg_database_size(oid) FROM pg_database WHERE datallowconn OR NOT datistemplate",
                    &[],
                )
                .await?;
            Ok::<_, crate::error::Error>(
                // pg_database_size is NULL for a database dropped while this runs (a
                // recreate between its drop and its create): not there, then.
                rows.iter()
                    .filter_map(|row| Some((row.get::<_, String>(0), row.get::<_, Option<i64>>(1)?)))
                    .collect::<HashMap<_, _>>(),
            )
        }
        .await;
        match sizes {
            Ok(sizes) => (cluster.clone(), Some(sizes)),
            Err(error) => {
                tracing::warn!("cluster {cluster}: sizes unknown: {error}");
                (cluster.clone(), None)
            }
        }
    }))
    .await;
    results.into_iter().collect()
}

fn table(entries: &[Entry]) -> String {
    let headers = [
        "CUSTOMER", "NAME", "ENV", "CLUSTER", "STATE", "OWNER", "SIZE", "UPDATED",
    ];
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|entry| {
            let size = match (entry.present, entry.size_bytes) {
                // Retiring drops the database: its absence is the expected state.
                (Some(false), _) if entry.retired_at.is_some() => "-".to_string(),
                (Some(true), Some(bytes)) => format_bytes(bytes.max(0) as u64),
                (Some(false), _) => "MISSING".to_string(),
                _ => "?".to_string(),
            };
            [
                entry.customer.clone(),
                entry.name.clone(),
                entry.environment.clone(),
                entry.cluster.clone(),
                match &entry.step {
                    Some(step) => format!("{} ({step})", entry.state),
                    None => entry.state.clone(),
                },
                entry.owner.clone(),
                size,
                entry.updated_at.format("%Y-%m-%d %H:%M").to_string(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(text, "{}", padded.join("  ").trim_end()).ok();
    };
    line(&headers);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    for entry in entries {
        if let Some(refreshed) = &entry.refreshed {
            writeln!(
                text,
                "{} refreshed {} from {} ({}), {}",
                entry.name,
                refreshed.at.format("%Y-%m-%d %H:%M"),
                refreshed.source.as_deref().unwrap_or("?"),
                refreshed.server.as_deref().unwrap_or("?"),
                if refreshed.neutralized {
                    "neutralized"
                } else {
                    "NOT neutralized"
                }
            )
            .ok();
        }
    }
    if entries.is_empty() {
        text.push_str("(the catalog manages no database yet: odoo-db provision --customer NAME)\n");
    }
    text
}

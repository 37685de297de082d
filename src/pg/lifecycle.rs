//! What the customer lifecycle commands (rotate, suspend, resume, retire) share about a
//! customer's role and database on a server: the environments a command acts on
//! ([`targets`], after the catalog's refusals), who may connect (the CONNECT holders
//! suspend revokes and retire re-verifies), the sessions they end, and what retire
//! checks and archives about a role (objects elsewhere per `pg_shdepend`, its
//! definition).

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::catalog::Catalog;
use crate::config::ClusterKind;
use crate::error::{Context, Error, Result};
use crate::names;
use crate::pg::dbprops::{self, AclItem, DbProps};
use crate::pg::oplock::{LockSession, OpLock};
use crate::pg::quote::{quote_ident, quote_literal};
use crate::servers::Servers;
use pgconn::ConnParams;

/// One environment of a customer: its role and database (same name) on its cluster's
/// primary, with a session there.
pub struct Target {
    pub kind: ClusterKind,
    pub cluster: String,
    /// The database and the role (DB_USER equals DB_NAME).
    pub name: String,
    pub client: Client,
    /// odoo-db's connection parameters of the primary (for child tools and other
    /// databases).
    pub admin: ConnParams,
    pub version_num: i32,
    /// odoo-db's own role on this server (`current_user`).
    pub agent: String,
}

impl Target {
    pub fn env(&self) -> &'static str {
        self.kind.as_str()
    }
}

/// The base name of a customer the catalog manages; refused (nothing changed) for an
/// unknown or retired customer.
pub async fn customer_base_name(catalog: &Catalog, customer: &str) -> Result<String> {
    let Some(base) = catalog.customer_base_name(customer).await? else {
        return Err(Error::refused(format!(
            "unknown customer {customer:?}: the catalog has no such customer (odoo-db list shows them); nothing was changed"
        )));
    };
    if let Some(at) = catalog.customer_retired_at(customer).await? {
        return Err(Error::refused(format!(
            "customer {customer:?} was retired on {}: its databases and roles are gone (odoo-db list --all shows the archives); nothing was changed",
            at.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    Ok(base)
}

/// Refuse (nothing changed) a base name that a retired customer held, or whose
/// integration twin one held: retired names are never given again (provision's
/// `--name`, adopt).
pub async fn refuse_tombstone(catalog: &Catalog, name: &str) -> Result<()> {
    let twin = names::integration_name(name);
    if let Some(tombstone) = catalog
        .tombstones()
        .await?
        .into_iter()
        .find(|t| t.name == name || t.name == twin)
    {
        return Err(Error::refused(format!(
            "name {name:?} refused: {} was the {} of customer {:?}, retired on {}, and a retired name is never given again; \
             choose another name",
            tombstone.name,
            tombstone.kind,
            tombstone.customer,
            tombstone.retired_at.format("%Y-%m-%d")
        )));
    }
    Ok(())
}

/// The customer's environments among `kinds`, each checked against the catalog (a
/// ready database, no unfinished recreate/restore/refresh run) and against the
/// cluster's pinned identity; refused before any change otherwise. With `only_recorded`
/// (no environment asked for by name) an environment the customer was never
/// provisioned in is skipped rather than refused.
pub async fn targets(
    servers: &Servers,
    catalog: &Catalog,
    base: &str,
    kinds: &[ClusterKind],
    only_recorded: bool,
) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    for kind in kinds {
        let (cluster, _) =
            servers.cluster_of_kind(*kind, "suspend, resume, rotate and retire each")?;
        let name = match kind {
            ClusterKind::Production => base.to_string(),
            ClusterKind::Integration => names::integration_name(base),
        };
        let env = kind.as_str();
        if let Some(run) = catalog.unfinished_run(&name).await? {
            return Err(Error::refused(format!(
                "{name} has an unfinished {} (step {}, started by {}): run `odoo-db {} {name}` to finish it first; nothing was changed",
                run.kind, run.step, run.actor, run.kind
            )));
        }
        match catalog.database_state(env, &name).await?.as_deref() {
            None if only_recorded => continue,
            None => {
                return Err(Error::refused(format!(
                    "{name} ({env}) is not in the catalog: provision (or adopt) it first; nothing was changed"
                )))
            }
            Some("ready") => {}
            Some(state) => {
                return Err(Error::refused(format!(
                    "{name} ({env}) is {state}, not ready: finish that job first (odoo-db list shows it); nothing was changed"
                )))
            }
        }
        let client = servers.connect_primary(cluster).await?;
        catalog.verify_identity(cluster, &client).await?;
        let version_num = dbprops::server_version_num(&client).await?;
        let agent: String = client
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0);
        targets.push(Target {
            kind: *kind,
            cluster: cluster.to_string(),
            name,
            client,
            admin: servers.primary(cluster)?,
            version_num,
            agent,
        });
    }
    if targets.is_empty() {
        return Err(Error::refused(format!(
            "{base} is in no environment in the catalog: provision (or adopt) it first; nothing was changed"
        )));
    }
    Ok(targets)
}

/// Whether `role` may log in; `None` when it does not exist.
/// One operation lock per target's name, each on its own catalog session, so that a
/// concurrent recreate, restore, refresh or lifecycle command on any of them is refused
/// ("in progress"). `what` names the command holding them.
pub async fn lock_each(servers: &Servers, targets: &[Target], what: &str) -> Result<Vec<OpLock>> {
    let mut locks = Vec::new();
    for target in targets {
        let session = LockSession::connect(servers).await?;
        locks.push(session.acquire(&target.name, what).await?);
    }
    Ok(locks)
}

pub async fn role_can_login(client: &Client, role: &str) -> Result<Option<bool>> {
    Ok(client
        .query_typed_opt(
            "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[(&role, Type::TEXT)],
        )
        .await
        .context("reading the role")?
        .map(|row| row.get(0)))
}

/// The ACL items of a database as its ACL reads (the default one for a NULL ACL).
pub fn acl_items(props: &DbProps) -> Vec<AclItem> {
    props
        .acl
        .clone()
        .unwrap_or_else(|| dbprops::default_acl(&props.owner))
}

/// The items that give CONNECT to someone other than odoo-db's role `agent`: PUBLIC,
/// the owner, third grantees such as a reporting role.
pub fn connect_holders(props: &DbProps, agent: &str) -> Vec<AclItem> {
    acl_items(props)
        .into_iter()
        .filter(|item| item.grantee.as_deref() != Some(agent))
        .filter(|item| {
            // A privilege held WITH GRANT OPTION is listed in `grantable` only.
            item.privileges
                .iter()
                .chain(&item.grantable)
                .any(|p| p == "CONNECT")
        })
        .collect()
}

/// How a grantee is written in messages.
pub fn grantee_name(item: &AclItem) -> String {
    item.grantee.clone().unwrap_or_else(|| "PUBLIC".to_string())
}

/// Refuse (nothing changed) an ACL with a grant made by someone other than the owner
/// (a grantee WITH GRANT OPTION passing it on): odoo-db acts as the owner, so it could
/// not revoke it, nor put it back exactly.
pub fn refuse_foreign_grantors(props: &DbProps) -> Result<()> {
    let foreign: Vec<String> = acl_items(props)
        .iter()
        .filter(|item| item.grantor != props.owner)
        .map(|item| format!("{} (granted by {})", grantee_name(item), item.grantor))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(Error::refused(format!(
        "database {} has privileges granted by roles other than its owner {}: {}; odoo-db acts as the owner and could neither revoke them nor put them back exactly. \
         Have them granted by the owner instead (REVOKE … CASCADE, then GRANT as {}), then run the command again; nothing was changed",
        props.name,
        props.owner,
        foreign.join(", "),
        props.owner
    )))
}

/// CONNECT revoked from every holder but odoo-db (run as a member of the owner, so
/// the owner is the grantor), and granted to odoo-db's role itself, which keeps
/// reaching the database (retire's archive) while nobody else can.
pub fn suspend_acl_statements(props: &DbProps, agent: &str) -> Vec<String> {
    let database = quote_ident(&props.name);
    let mut statements: Vec<String> = connect_holders(props, agent)
        .iter()
        .map(|item| {
            format!(
                "REVOKE CONNECT ON DATABASE {database} FROM {} CASCADE",
                dbprops::grantee_sql(&item.grantee)
            )
        })
        .collect();
    let agent_has_connect = acl_items(props).iter().any(|item| {
        item.grantee.as_deref() == Some(agent) && item.privileges.iter().any(|p| p == "CONNECT")
    });
    if !agent_has_connect {
        statements.push(format!(
            "GRANT CONNECT ON DATABASE {database} TO {}",
            quote_ident(agent)
        ));
    }
    statements
}

/// SQL that lists the client sessions on `$1` (database) or of `$2` (role) but this
/// one; superusers' sessions are reported apart (odoo-db may not end them).
const SESSIONS_SQL: &str = include_str!("../../sql/lifecycle/sessions.sql");

/// A client session as messages show it.
#[derive(Debug, Clone)]
pub struct Session {
    pub pid: i32,
    pub user: String,
    pub database: String,
    pub application: String,
    pub superuser: bool,
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({} in {}, {:?})",
            self.pid, self.user, self.database, self.application
        )
    }
}

/// The client sessions on `database` or of `role`, this one excepted.
pub async fn sessions(client: &Client, database: &str, role: &str) -> Result<Vec<Session>> {
    let rows = client
        .query_typed(
            SESSIONS_SQL,
            &[(&database, Type::TEXT), (&role, Type::TEXT)],
        )
        .await
        .context("listing the sessions")?;
    Ok(rows
        .iter()
        .map(|row| Session {
            pid: row.get(0),
            user: row.get(1),
            database: row.get(2),
            application: row.get(3),
            superuser: row.get(4),
        })
        .collect())
}

/// End every client session on `database` and every session of `role`, and wait
/// (up to 30 s) until they are gone. A superuser's session cannot be ended by
/// odoo-db's role: it is refused when one is there. Returns how many were ended.
pub async fn end_sessions(client: &Client, database: &str, role: &str) -> Result<usize> {
    let found = sessions(client, database, role).await?;
    let superusers: Vec<String> = found
        .iter()
        .filter(|s| s.superuser)
        .map(ToString::to_string)
        .collect();
    if !superusers.is_empty() {
        return Err(Error::failed(format!(
            "superuser sessions on {database} that odoo-db's role may not end: {}; end them (pg_terminate_backend as a superuser) and run the command again",
            superusers.join(", ")
        )));
    }
    let pids: Vec<i32> = found.iter().map(|s| s.pid).collect();
    terminate(client, &pids).await?;
    Ok(pids.len())
}

/// Ask each backend to end, then wait until none of them is left (30 s at most).
pub async fn terminate(client: &Client, pids: &[i32]) -> Result<()> {
    if pids.is_empty() {
        return Ok(());
    }
    client
        .query_typed(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int4[]) AS pid",
            &[(&pids, Type::INT4_ARRAY)],
        )
        .await
        .context("ending sessions (odoo-db's role needs pg_signal_backend)")?;
    for _ in 0..300 {
        let left: i64 = client
            .query_typed_one(
                "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = ANY($1::int4[])",
                &[(&pids, Type::INT4_ARRAY)],
            )
            .await?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(Error::failed(format!(
        "sessions {pids:?} were asked to end and are still there after 30 s; run the command again"
    )))
}

/// What `role` has in the cluster besides its own database (ownership of or
/// privileges on objects in other databases, shared objects, policies), per
/// `pg_shdepend`: odoo-db cannot connect to other customers' databases, so this is
/// how it knows that dropping the role would fail or orphan something.
const ELSEWHERE_SQL: &str = include_str!("../../sql/lifecycle/role_elsewhere.sql");

/// Objects of `role` outside its database `database` (see [`ELSEWHERE_SQL`]).
pub async fn role_elsewhere(client: &Client, role: &str, database: &str) -> Result<Vec<String>> {
    let rows = client
        .query_typed(
            ELSEWHERE_SQL,
            &[(&role, Type::TEXT), (&database, Type::TEXT)],
        )
        .await
        .context("looking for the role's objects elsewhere in the cluster (pg_shdepend)")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The role's definition as SQL (attributes, settings, memberships, comment), to keep
/// beside its final archive. Its password is not kept: a restored role gets a new one.
pub async fn role_definition(client: &Client, role: &str) -> Result<String> {
    let row = client
        .query_typed_one(
            include_str!("../../sql/lifecycle/role_definition.sql"),
            &[(&role, Type::TEXT)],
        )
        .await
        .context("reading the role's definition")?;
    let attributes: String = row.get(0);
    let settings: Vec<String> = row.get(1);
    let member_of: Vec<String> = row.get(2);
    let comment: Option<String> = row.get(3);
    let ident = quote_ident(role);
    let mut sql = format!(
        "-- The role {role} as odoo-db retired it. Its password is not kept: set a new one\n\
         -- (odoo-db rotate, or a SCRAM verifier) if you bring the role back.\n\
         CREATE ROLE {ident} {attributes};\n"
    );
    for setting in settings {
        if let Ok(assignment) = dbprops::setting_assignment(&setting) {
            sql.push_str(&format!("ALTER ROLE {ident} SET {assignment};\n"));
        }
    }
    for group in member_of {
        sql.push_str(&format!("GRANT {} TO {ident};\n", quote_ident(&group)));
    }
    if let Some(comment) = comment {
        sql.push_str(&format!(
            "COMMENT ON ROLE {ident} IS {};\n",
            quote_literal(&comment)
        ));
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(acl: Option<Vec<AclItem>>) -> DbProps {
        DbProps {
            name: "calm_owl_0042".into(),
            owner: "calm_owl_0042".into(),
            encoding: "UTF8".into(),
            collate: "C.UTF-8".into(),
            ctype: "C.UTF-8".into(),
            locale_provider: "libc".into(),
            provider_locale: None,
            icu_rules: None,
            tablespace: "pg_default".into(),
            connection_limit: -1,
            allow_connections: true,
            acl,
            acl_text: None,
            effective_acl: String::new(),
            comment: None,
            settings: vec![],
            role_settings: vec![],
        }
    }

    fn item(grantee: Option<&str>, privileges: &[&str], grantable: &[&str]) -> AclItem {
        AclItem {
            grantee: grantee.map(str::to_string),
            grantor: "calm_owl_0042".into(),
            privileges: privileges.iter().map(|p| p.to_string()).collect(),
            grantable: grantable.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn every_connect_holder_but_odoo_db_loses_it_and_odoo_db_gets_it() {
        let acl = vec![
            item(None, &["CONNECT"], &[]),
            item(
                Some("calm_owl_0042"),
                &["CREATE", "TEMPORARY", "CONNECT"],
                &[],
            ),
            // WITH GRANT OPTION: listed among the grantable privileges only.
            item(Some("reporting"), &["TEMPORARY"], &["CONNECT"]),
            item(Some("other"), &["TEMPORARY"], &[]),
        ];
        let props = props(Some(acl));
        let holders: Vec<String> = connect_holders(&props, "odoo_db_admin")
            .iter()
            .map(grantee_name)
            .collect();
        assert_eq!(holders, ["PUBLIC", "calm_owl_0042", "reporting"]);
        assert_eq!(
            suspend_acl_statements(&props, "odoo_db_admin"),
            [
                r#"REVOKE CONNECT ON DATABASE "calm_owl_0042" FROM PUBLIC CASCADE"#,
                r#"REVOKE CONNECT ON DATABASE "calm_owl_0042" FROM "calm_owl_0042" CASCADE"#,
                r#"REVOKE CONNECT ON DATABASE "calm_owl_0042" FROM "reporting" CASCADE"#,
                r#"GRANT CONNECT ON DATABASE "calm_owl_0042" TO "odoo_db_admin""#,
            ]
        );
    }

    #[test]
    fn a_null_acl_is_the_default_one_and_a_second_suspend_changes_nothing() {
        let default = props(None);
        let holders: Vec<String> = connect_holders(&default, "odoo_db_admin")
            .iter()
            .map(grantee_name)
            .collect();
        assert_eq!(holders, ["PUBLIC", "calm_owl_0042"]);
        let suspended = props(Some(vec![
            item(None, &["TEMPORARY"], &[]),
            item(Some("odoo_db_admin"), &["CONNECT"], &[]),
        ]));
        assert!(suspend_acl_statements(&suspended, "odoo_db_admin").is_empty());
    }

    #[test]
    fn grants_by_another_grantor_are_refused() {
        let mut foreign = item(Some("analyst"), &["CONNECT"], &[]);
        foreign.grantor = "reporting".into();
        let error = refuse_foreign_grantors(&props(Some(vec![foreign]))).unwrap_err();
        assert_eq!(error.class(), crate::error::Class::Refused);
        assert!(
            error.to_string().contains("analyst (granted by reporting)"),
            "{error}"
        );
        refuse_foreign_grantors(&props(None)).unwrap();
    }
}

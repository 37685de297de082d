//! Throwaway login roles for the steps that run customer code.
//!
//! A customer owns its database and may create functions used by CHECK constraints,
//! generated columns, index expressions and triggers. They run whenever rows go in
//! (pg_restore of a backup, a neutralizing UPDATE), as the session's user, and such
//! code can `RESET ROLE`: a restore run as odoo-db's role with `SET ROLE <owner>`
//! would hand the customer odoo-db's privileges (CREATEROLE, ADMIN on every customer
//! role, and up to PostgreSQL 15 the power to grant itself `pg_execute_server_program`).
//!
//! So such a step logs in as a role made for it alone ([`StepRole::create`]):
//! `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`, a random name
//! and a random password (sent as a SCRAM verifier computed here), CONNECT on the one
//! database, and exactly two memberships: the customer role (whose rights the step
//! needs) and [`GROUP_ROLE`], which has no rights at all and exists so that one
//! `pg_hba.conf` line (`host <databases> +odoo_db_step <addresses> scram-sha-256`)
//! admits every such role. Whatever the customer's code does, `RESET ROLE` leads back
//! to this role, which can do nothing the customer cannot.
//!
//! The role is recorded in the catalog (`catalog.step_roles`) before it is created and
//! forgotten only after it is dropped ([`StepRole::drop`]): a run killed in between is
//! cleaned up by the next run on the same database ([`drop_leftovers`]), which holds
//! the same lock. Dropping ends its sessions, gives whatever it came to own to the
//! customer role and revokes what it was granted.

use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::Rng;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::catalog::{Catalog, LeftoverStepRole};
use crate::error::{Context, Error, Result};
use crate::pg::quote::{quote_ident, quote_literal};
use crate::secrets::{self, Secret};
use crate::servers;
use crate::sqltemplate::{render, Placeholder};
use pgconn::ConnParams;

/// How a step role may connect to its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// Granted CONNECT itself: for a database closed to all but odoo-db (a restore, a
    /// neutralization before the copy opens), where the owner has none to pass on.
    Granted,
    /// Through what it inherits as a member of the owner, who may connect: the
    /// database's ACL is left exactly as it is (the audit, which must change nothing,
    /// and whose reads may overlap a suspend or a recreate that records that ACL).
    ThroughOwner,
}

/// The group role every step role belongs to: NOLOGIN, no attributes, member of
/// nothing. pg_hba.conf admits step roles with `+odoo_db_step`.
pub const GROUP_ROLE: &str = "odoo_db_step";
/// Step role names: this prefix and random groups of 3 lowercase letters and digits.
pub const ROLE_PREFIX: &str = "odoo_db_step_";
/// A step role cannot log in after this, even if a crash leaves it behind.
const VALID_FOR: &str = "1 day";

/// Create [`GROUP_ROLE`] when missing, and refuse one that is not harmless: a role
/// with an attribute or a membership would lend it to every step role, and so to
/// every customer's code.
pub async fn ensure_group(client: &Client) -> Result<()> {
    let create = format!(
        "DO $create$ BEGIN
             IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {group}) THEN
                 CREATE ROLE {ident} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
                 COMMENT ON ROLE {ident} IS 'odoo-db: the throwaway login roles of steps that run customer code (pg_hba.conf: +{GROUP_ROLE})';
             END IF;
         END $create$",
        group = quote_literal(GROUP_ROLE),
        ident = quote_ident(GROUP_ROLE),
    );
    match client.batch_execute(&create).await {
        Ok(()) => {}
        // A concurrent odoo-db created it between the test and the CREATE.
        Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {}
        Err(error) => {
            return Err(Error::from(error).context(format!("creating the group role {GROUP_ROLE}")))
        }
    }
    let row = client
        .query_typed_one(
            "SELECT r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls OR r.rolcanlogin,
                    coalesce((SELECT string_agg(g.rolname::text, ', ' ORDER BY g.rolname)
                                FROM pg_catalog.pg_auth_members m
                                JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                               WHERE m.member = r.oid), '')
               FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            &[(&GROUP_ROLE, Type::TEXT)],
        )
        .await
        .with_context(|| format!("checking the group role {GROUP_ROLE}"))?;
    let (attributes, memberships): (bool, String) = (row.get(0), row.get(1));
    if attributes || !memberships.is_empty() {
        return Err(Error::refused(format!(
            "the group role {GROUP_ROLE} (which every throwaway step role joins, so customer code \
             would get what it has) {}: it must be NOLOGIN with no attribute and no membership. \
             A superuser must fix it (ALTER ROLE {GROUP_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB \
             NOCREATEROLE NOREPLICATION NOBYPASSRLS; REVOKE … FROM {GROUP_ROLE}); nothing was changed",
            if memberships.is_empty() {
                "has attributes (LOGIN, SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS)".to_string()
            } else {
                format!("is a member of {memberships}")
            }
        )));
    }
    Ok(())
}

/// What [`check`] asks of the group role, the owner and odoo-db's role.
const CHECK_SQL: &str = include_str!("../../sql/roles/step_role_check.sql");

/// The version-dependent parts of [`CHECK_SQL`].
const CHECK_BY_VERSION: &[Placeholder] = &[Placeholder {
    name: "admin",
    oldest: "NOT r.rolsuper",
    since: &[(
        160000,
        "pg_catalog.pg_has_role(current_user, r.oid, 'USAGE WITH ADMIN OPTION') \
         OR pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION')",
    )],
}];

/// Refuse (nothing changed) before a job's first change when its step role could not
/// be made: [`GROUP_ROLE`] exists but is not harmless, or odoo-db's role may not add
/// members to it or to `owner` (PostgreSQL 16+ asks for ADMIN OPTION on both: a role
/// odoo-db created has it, one a superuser created needs `GRANT … TO odoo-db's role WITH
/// ADMIN OPTION`; up to 15 CREATEROLE is enough for a role that is no superuser). A
/// missing group is fine: the job creates it.
pub async fn check(server: &Client, owner: &str, version_num: i32) -> Result<()> {
    let rows = server
        .query_typed(
            &render(CHECK_SQL, CHECK_BY_VERSION, version_num),
            &[(&GROUP_ROLE, Type::TEXT), (&owner, Type::TEXT)],
        )
        .await
        .context("checking that the throwaway role of the step can be made")?;
    for row in rows {
        let (role, grantable, attributes, member_of, agent): (String, bool, bool, bool, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if role == GROUP_ROLE && (attributes || member_of) {
            return Err(Error::refused(format!(
                "the group role {GROUP_ROLE}, which every throwaway step role joins, has an attribute \
                 or a membership that customer code would get: a superuser must make it NOLOGIN with \
                 no attribute and no membership"
            )));
        }
        if !grantable {
            return Err(Error::refused(format!(
                "odoo-db's role {agent} may not add members to role {role}, which the throwaway role \
                 the step runs as must join; a superuser must run once: GRANT {} TO {} WITH ADMIN OPTION",
                quote_ident(&role),
                quote_ident(&agent)
            )));
        }
    }
    Ok(())
}

/// A throwaway login role for one step in one database; drop it with
/// [`StepRole::drop`] whatever the step's outcome.
pub struct StepRole {
    pub name: String,
    password: Secret,
    database: String,
    owner: String,
}

impl std::fmt::Debug for StepRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRole")
            .field("name", &self.name)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// `odoo_db_step_` and 7 groups of 3 random lowercase letters and digits joined by `_`
/// (about 108 bits): no run of 4 alphanumerics, so no customer's name token (the names
/// rule forbids those of 4 and more in any database or role name) can appear in it by
/// chance and turn `audit` red while a step runs.
fn random_name() -> String {
    let groups: Vec<String> = (0..7)
        .map(|_| {
            OsRng
                .sample_iter(&Alphanumeric)
                .map(|b| char::from(b).to_ascii_lowercase())
                .take(3)
                .collect()
        })
        .collect();
    format!("{ROLE_PREFIX}{}", groups.join("_"))
}

impl StepRole {
    /// Record, then create, a role that can log into `database` (on `server`, the
    /// cluster `cluster`) with the rights of `owner` and nothing else. odoo-db's role
    /// must be able to grant `owner` (it is a member of it, or CREATEROLE up to 15,
    /// ADMIN on it from 16). `connect` says whether it is granted CONNECT itself.
    pub async fn create(
        server: &Client,
        catalog: &Catalog,
        cluster: &str,
        database: &str,
        owner: &str,
        purpose: &str,
        connect: Connect,
    ) -> Result<StepRole> {
        ensure_group(server).await?;
        let role = StepRole {
            name: random_name(),
            password: secrets::generate_password(),
            database: database.to_string(),
            owner: owner.to_string(),
        };
        catalog
            .record_step_role(&role.name, cluster, database, owner, purpose)
            .await?;
        let verifier = secrets::scram_verifier(&role.password);
        let ident = quote_ident(&role.name);
        let grant = match connect {
            Connect::Granted => format!(
                "GRANT CONNECT ON DATABASE {} TO {ident};",
                quote_ident(database)
            ),
            Connect::ThroughOwner => String::new(),
        };
        let statements = format!(
            "CREATE ROLE {ident} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT \
                 PASSWORD {verifier} VALID UNTIL {until} IN ROLE {owner}, {group};
             {grant}
             COMMENT ON ROLE {ident} IS {comment}",
            verifier = quote_literal(&verifier),
            until = quote_literal(&valid_until(server).await?),
            owner = quote_ident(owner),
            group = quote_ident(GROUP_ROLE),
            comment = quote_literal(&format!(
                "odoo-db: throwaway role of a {purpose} of {database}; dropped when it ends"
            )),
        );
        if let Err(error) = server.batch_execute(&statements).await {
            let error = Error::from(error).context(format!(
                "creating the throwaway role {} that the {purpose} of {database} runs as",
                role.name
            ));
            // The statements ran as one transaction, so normally nothing exists; the
            // record goes once that is sure, and stays for the next run otherwise.
            if drop_role(server, None, &role.name, database, owner)
                .await
                .is_ok()
            {
                let _ = forget(catalog, &role.name).await;
            }
            return Err(error);
        }
        tracing::debug!("{database}: created the throwaway role {}", role.name);
        Ok(role)
    }

    /// Connection parameters of `base` (server, TLS, database) logged in as this role
    /// with its password.
    pub fn login(&self, base: &ConnParams) -> ConnParams {
        base.with_dbname(&self.database)
            .with_user(&self.name)
            .with_password(self.password.expose())
    }

    /// End the role's sessions, give what it owns to the customer role, revoke what it
    /// was granted, drop it, and forget it in the catalog. `admin` are odoo-db's
    /// parameters on the same server (any database).
    pub async fn drop(self, server: &Client, catalog: &Catalog, admin: &ConnParams) -> Result<()> {
        drop_role(server, Some(admin), &self.name, &self.database, &self.owner).await?;
        forget(catalog, &self.name).await?;
        tracing::debug!(
            "{}: dropped the throwaway role {}",
            self.database,
            self.name
        );
        Ok(())
    }
}

/// `now() + VALID_FOR` as the server prints it.
async fn valid_until(server: &Client) -> Result<String> {
    Ok(server
        .query_typed_one(
            &format!("SELECT (now() + interval '{VALID_FOR}')::text"),
            &[],
        )
        .await?
        .get(0))
}

async fn forget(catalog: &Catalog, role: &str) -> Result<()> {
    catalog.forget_step_role(role).await
}

/// Drop the step roles a killed run left for `database` on `cluster` (the caller holds
/// the database's lock, so no live run uses them). Returns their names.
pub async fn drop_leftovers(
    server: &Client,
    catalog: &Catalog,
    admin: &ConnParams,
    cluster: &str,
    database: &str,
) -> Result<Vec<String>> {
    let leftovers = catalog.step_roles_of(cluster, database).await?;
    let mut dropped = Vec::new();
    for LeftoverStepRole { role, owner } in leftovers {
        drop_role(server, Some(admin), &role, database, &owner)
            .await
            .with_context(|| {
                format!("dropping the throwaway role {role} left by an interrupted run")
            })?;
        forget(catalog, &role).await?;
        tracing::info!("{database}: dropped the throwaway role {role} left by an interrupted run");
        dropped.push(role);
    }
    Ok(dropped)
}

/// Drop `role` if it exists. With `admin`, what it owns in `database` (when that
/// accepts connections) goes to `owner` first; PostgreSQL refuses to drop a role that
/// still owns something, and says where.
async fn drop_role(
    server: &Client,
    admin: Option<&ConnParams>,
    role: &str,
    database: &str,
    owner: &str,
) -> Result<()> {
    let row = server
        .query_typed_opt(
            "SELECT pg_catalog.pg_has_role(current_user, r.oid, 'USAGE'),
                    (SELECT d.datallowconn FROM pg_catalog.pg_database d WHERE d.datname = $2)
               FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            &[(&role, Type::TEXT), (&database, Type::TEXT)],
        )
        .await?;
    let Some(row) = row else { return Ok(()) };
    let (usage, database_open): (bool, Option<bool>) = (row.get(0), row.get(1));
    let ident = quote_ident(role);
    // No new session, then none at all.
    server
        .batch_execute(&format!("ALTER ROLE {ident} NOLOGIN"))
        .await
        .context("disabling the throwaway role's login")?;
    end_sessions(server, role).await?;
    if !usage {
        // REASSIGN and DROP OWNED need the role's privileges; odoo-db created it, so
        // it may grant it to itself (ADMIN OPTION on 16+, CREATEROLE before).
        server
            .batch_execute(&format!("GRANT {ident} TO CURRENT_USER"))
            .await
            .context("taking the throwaway role's privileges to drop what it owns")?;
    }
    if let (Some(admin), Some(true)) = (admin, database_open) {
        // Inside the customer's database, where the customer's code may have made the
        // role own something. No name is resolved by these statements, and the search
        // path is pinned anyway.
        let inside = pinned_search_path(&admin.with_dbname(database));
        let client = inside
            .connect(&servers::admin_session())
            .await
            .with_context(|| format!("connecting to {database} to clean up after {role}"))?;
        client
            .batch_execute(&format!(
                "REASSIGN OWNED BY {ident} TO {owner}; DROP OWNED BY {ident}",
                owner = quote_ident(owner)
            ))
            .await
            .with_context(|| format!("giving what {role} owns in {database} to {owner}"))?;
    }
    // Privileges on shared objects (CONNECT on the database) and anything in the
    // maintenance database.
    server
        .batch_execute(&format!("DROP OWNED BY {ident}; DROP ROLE {ident}"))
        .await
        .with_context(|| format!("dropping the throwaway role {role}"))?;
    Ok(())
}

/// Terminate every session of `role` and wait until they are gone (odoo-db's role is
/// a member of pg_signal_backend).
async fn end_sessions(server: &Client, role: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let rows = server
            .query_typed(
                "SELECT pid, pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1",
                &[(&role, Type::TEXT)],
            )
            .await
            .context("ending the throwaway role's sessions")?;
        if rows.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::failed(format!(
                "{} session(s) of the throwaway role {role} did not end within 30 s",
                rows.len()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The same parameters with `search_path` fixed to `pg_catalog` from the startup
/// packet on: a startup option beats `ALTER DATABASE … SET search_path`, so no
/// function or operator a customer placed in its schemas can shadow a built-in one in
/// a session of odoo-db's role inside its database.
pub fn pinned_search_path(params: &ConnParams) -> ConnParams {
    with_startup_options(params, &["-c search_path=pg_catalog"])
}

/// `params` with `switches` appended to its `options` (after the user's own, so ours
/// win).
pub fn with_startup_options(params: &ConnParams, switches: &[&str]) -> ConnParams {
    params.with_startup_options(switches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_random_identifiers() {
        let a = random_name();
        let b = random_name();
        assert_ne!(a, b);
        assert!(a.starts_with(ROLE_PREFIX));
        assert_eq!(a.len(), ROLE_PREFIX.len() + 27);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert!(a[ROLE_PREFIX.len()..]
            .split('_')
            .all(|group| group.len() == 3));
    }

    /// What each version got before the check was templated: the `format!` of the same
    /// statement, with the same version test.
    #[test]
    fn each_version_gets_the_check_it_always_got() {
        crate::sqltemplate::assert_complete(CHECK_SQL, CHECK_BY_VERSION);
        for major in 12..=18 {
            let version_num = major * 10000 + 4;
            let admin = if version_num >= 160000 {
                "pg_catalog.pg_has_role(current_user, r.oid, 'USAGE WITH ADMIN OPTION') \
                 OR pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION')"
            } else {
                "NOT r.rolsuper"
            };
            let before = format!(
                "SELECT r.rolname::text,
                        me.rolsuper OR (me.rolcreaterole AND ({admin})),
                        r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls OR r.rolcanlogin,
                        EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid),
                        current_user::text
                   FROM pg_catalog.pg_roles r, pg_catalog.pg_roles me
                  WHERE r.rolname IN ($1, $2) AND me.rolname = current_user"
            );
            assert_eq!(
                crate::sqltemplate::statement(&render(CHECK_SQL, CHECK_BY_VERSION, version_num)),
                before,
                "PostgreSQL {major}"
            );
        }
    }

    #[test]
    fn startup_options_follow_the_users() {
        let params = ConnParams::parse("host=h user=u options='-c work_mem=1MB'").unwrap();
        let pinned = pinned_search_path(&params);
        assert_eq!(
            pinned.options(),
            Some("-c work_mem=1MB -c search_path=pg_catalog")
        );
    }
}
